"""Write ``wine_colour.csv``: scikit-learn's wine data with one text column, to show a table with categories.

Origin: ``sklearn.datasets.load_wine`` (UCI Wine: chemical analysis of 178 wines from three cultivars of
one Italian region). ``color_intensity`` is replaced by ``colour``, its tercile on all 178 wines in words
(``pale``, ``medium``, ``deep``) — a category a taster would write down, still carrying that column's
information. The label ``cultivar`` is scikit-learn's class name (``class_0`` …) rather than 0/1/2, so a
model's predictions come back as these names. The file is rewritten exactly by

    python examples/data/make_csv.py
"""

from pathlib import Path

import pandas as pd
from sklearn.datasets import load_wine

OUT = Path(__file__).with_name("wine_colour.csv")


def main(out: Path = OUT) -> None:
    wine = load_wine(as_frame=True)
    frame = wine.data.copy()
    colour = pd.qcut(frame.pop("color_intensity"), 3, labels=["pale", "medium", "deep"]).astype(str)
    frame.insert(frame.columns.get_loc("hue"), "colour", colour)
    frame["cultivar"] = wine.target_names[wine.target]
    frame.to_csv(out, index=False)
    print(f"wrote {out} ({len(frame)} rows, {frame.shape[1]} columns)")


if __name__ == "__main__":
    main()
