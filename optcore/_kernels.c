/* optcore._kernels: Adam's update in one pass over the parameters (optcore/optimizers/adam.py).

   The NumPy update makes twelve passes over five arrays the size of the network (94k floats in issue 15's
   network: ~157 us a step, half of a batch-64 step's matrix products). This loop makes one, with the same
   operations in the same order, each rounded to the arrays' type as NumPy rounds it, so the two give the
   same bits (tests/optcore/test_kernels.py):

       m = m*b1;  m = m + g*(1-b1)            (ewa_update, scratch = g*(1-b1))
       v = v*b2;  v = v + (g*g)*(1-b2)        (np.square, then ewa_update)
       p = p - (m / (sqrt(v) + eps_term)) * step_scale

   The scalars arrive as Python floats and are rounded to the arrays' type once, as NumPy rounds a Python
   float against a float32 array. Built without contracting a*b + c into a fused multiply-add, which rounds
   once where NumPy rounds twice (setup flags in pyproject.toml); IEEE square root and division round
   correctly in both. Only C-contiguous float32 or float64 buffers of one length and type are taken, p, m and
   v writable and no two of the five the same memory; anything else returns False and the caller takes the
   NumPy path. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

#define ADAM_LOOP(T, SQRT)                                                                             \
    static void adam_##T(Py_ssize_t n, T *restrict p, const T *restrict g, T *restrict m, T *restrict v, \
                         T b1, T c1, T b2, T c2, T eps_term, T step_scale)                             \
    {                                                                                                  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                           \
            T gi = g[i];                                                                               \
            T mi = m[i] * b1;                                                                          \
            T gc = gi * c1;                                                                            \
            mi = mi + gc;                                                                              \
            T sq = gi * gi;                                                                            \
            T vi = v[i] * b2;                                                                          \
            T sc = sq * c2;                                                                            \
            vi = vi + sc;                                                                              \
            T d = SQRT(vi) + eps_term;                                                                 \
            T u = mi / d;                                                                              \
            u = u * step_scale;                                                                        \
            p[i] = p[i] - u;                                                                           \
            m[i] = mi;                                                                                 \
            v[i] = vi;                                                                                 \
        }                                                                                              \
    }

ADAM_LOOP(float, sqrtf)
ADAM_LOOP(double, sqrt)

static int
is_type(const Py_buffer *b, char code)
{
    const char *f = b->format ? b->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@')
        f++;
    return f[0] == code && f[1] == '\0';
}

static int
overlaps(const Py_buffer *a, const Py_buffer *b)
{
    const char *a0 = a->buf, *b0 = b->buf;
    return a0 < b0 + b->len && b0 < a0 + a->len;
}

/* adam(p, g, m, v, b1, c1, b2, c2, eps_term, step_scale) -> bool: True when the update was made. */
static PyObject *
adam(PyObject *self, PyObject *args)
{
    PyObject *objs[4];
    double b1, c1, b2, c2, eps_term, step_scale;
    if (!PyArg_ParseTuple(args, "OOOOdddddd", &objs[0], &objs[1], &objs[2], &objs[3], &b1, &c1, &b2, &c2,
                          &eps_term, &step_scale))
        return NULL;
    Py_buffer bufs[4];
    int got = 0, ok = 1;
    for (; got < 4; got++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (got == 1 ? 0 : PyBUF_WRITABLE);
        if (PyObject_GetBuffer(objs[got], &bufs[got], flags) < 0) {
            PyErr_Clear();
            ok = 0;
            break;
        }
    }
    if (ok) {
        char code = is_type(&bufs[0], 'f') ? 'f' : is_type(&bufs[0], 'd') ? 'd' : 0;
        for (int i = 0; i < 4 && ok; i++)
            ok = code && is_type(&bufs[i], code) && bufs[i].len == bufs[0].len;
        for (int i = 0; i < 4 && ok; i++)
            for (int j = i + 1; j < 4 && ok; j++)
                ok = !overlaps(&bufs[i], &bufs[j]);
        if (ok) {
            Py_BEGIN_ALLOW_THREADS
            if (code == 'f')
                adam_float(bufs[0].len / (Py_ssize_t)sizeof(float), bufs[0].buf, bufs[1].buf, bufs[2].buf,
                           bufs[3].buf, (float)b1, (float)c1, (float)b2, (float)c2, (float)eps_term,
                           (float)step_scale);
            else
                adam_double(bufs[0].len / (Py_ssize_t)sizeof(double), bufs[0].buf, bufs[1].buf, bufs[2].buf,
                            bufs[3].buf, b1, c1, b2, c2, eps_term, step_scale);
            Py_END_ALLOW_THREADS
        }
    }
    for (int i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    return PyBool_FromLong(ok);
}

static PyMethodDef methods[] = {
    {"adam", adam, METH_VARARGS,
     "adam(p, g, m, v, b1, c1, b2, c2, eps_term, step_scale) -> bool\n\n"
     "Adam's update of p, m and v in place, in one pass (see optcore/optimizers/adam.py); False, with\n"
     "nothing changed, for arrays it does not take (not C-contiguous float32/float64 of one length)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "optcore._kernels",
                                    "optcore's compiled update loops (optional: NumPy does the same).", -1,
                                    methods};

PyMODINIT_FUNC
PyInit__kernels(void)
{
    return PyModule_Create(&module);
}
