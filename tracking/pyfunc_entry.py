"""The MLflow pyfunc model of an exported sweep setting (logged as "models from code": MLflow copies this
file into the model and runs it to load it, so no class is pickled by reference).

The model folder holds this file, a copy of the ``optcore`` package (``code/optcore``, so the model loads
where optsweep is not installed: it needs only NumPy, pandas, scikit-learn and MLflow) and the artifact
``optcore_model`` written by :meth:`optcore.Model.save`. Prediction takes raw rows in the training table's
format — a DataFrame with the original columns (extra columns ignored), numbers and text as in the file:

    model = mlflow.pyfunc.load_model(uri)
    model.predict(frame)                                        # labels (regression: values), shape (m,)
    model.predict(frame, params={"output": "probabilities"})    # DataFrame, one column per class label

This file imports only MLflow, pandas and optcore: it must run inside the model's own environment.
"""

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

ARTIFACT = "optcore_model"
OUTPUT_PARAM = "output"
# What predict returns, by the ``output`` param: the registry, so the signature and the error list them.
OUTPUTS = ("labels", "probabilities")


class OptcoreModel(PythonModel):
    """An :class:`optcore.Model` behind MLflow's pyfunc interface."""

    def load_context(self, context):
        import optcore

        self.model = optcore.Model.load(context.artifacts[ARTIFACT])

    # A DataFrame hint: MLflow takes the schema from the logged signature, and does not warn that the hint
    # could have given one (no __future__ annotations here: MLflow reads the hint as a type, not a string).
    def predict(self, context, model_input: pd.DataFrame, params=None):
        """Labels (or values) for raw rows; ``params={"output": "probabilities"}`` gives class probabilities
        as a DataFrame whose columns are the class labels, in the model's class order."""
        output = (params or {}).get(OUTPUT_PARAM, OUTPUTS[0])
        if output not in OUTPUTS:
            raise ValueError(f"params output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        if output == "probabilities":
            proba = self.model.predict_proba(model_input)
            return pd.DataFrame(proba, columns=[str(c) for c in self.model.classes])
        return self.model.predict(model_input)


mlflow.models.set_model(OptcoreModel())
