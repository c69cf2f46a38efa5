/* optcore._kernels: the optimizers' updates in one pass over the parameters (optcore/optimizers/).

   NumPy makes the update of Adam in twelve passes over five arrays the size of the network (94k floats in
   issue 15's network: ~115 us a step in float32, more than a third of a batch-64 step's matrix products),
   RMSProp and Adagrad in seven, momentum in three to six, each a call of its own. These loops make one, with
   the same operations in the same order, each rounded to the arrays' type as NumPy rounds it, so that the
   two give the same bits (tests/optcore/test_kernels.py). Each line of a loop is one NumPy operation of the
   optimizer's ``_apply``.

   The scalars arrive as Python floats (already combined in Python, as ``_apply`` combines them) and are
   rounded to the arrays' type once, as NumPy rounds a Python float against a float32 array. Built without
   contracting a*b + c into a fused multiply-add, which rounds once where NumPy rounds twice (the flags in
   pyproject.toml); IEEE square root and division round correctly in both. Two things differ: a NaN's payload
   and sign where two NaNs meet in an addition (the compiler may swap its operands; NumPy's own choice
   changes between versions), and no floating-point warnings (the training loop silences NumPy's anyway).
   Only C-contiguous float32 or float64 arrays of one shape and type are taken, the parameters and moments
   writable, no two overlapping; for anything else a function changes nothing and returns False, and the
   caller makes the NumPy update. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* The loops, once per float type. Each line is one NumPy operation of the optimizer's _apply, in its order;
   a temporary is rounded to T as NumPy's array is. */
#define LOOPS(T, SQRT)                                                                                   \
    /* RMSProp's and Adagrad's step, lr·g / (sqrt(acc) + eps): np.sqrt, += eps, g·lr, then the division */ \
    static inline T adaptive_step_##T(T acc, T gi, T eps, T lr)                                          \
    {                                                                                                    \
        T d = SQRT(acc) + eps;                                                                           \
        T u = gi * lr;                                                                                   \
        return u / d;                                                                                    \
    }                                                                                                    \
    static void adam_##T(Py_ssize_t n, T *restrict p, const T *restrict g, T *restrict m, T *restrict v, \
                         const double *k)                                                               \
    {                                                                                                    \
        const T b1 = (T)k[0], c1 = (T)k[1], b2 = (T)k[2], c2 = (T)k[3], eps = (T)k[4], scale = (T)k[5];  \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            T gi = g[i];                                                                                 \
            T mi = m[i] * b1;                                                                            \
            T gc = gi * c1;                                                                              \
            mi = mi + gc;                                                                                \
            T sq = gi * gi;                                                                              \
            T vi = v[i] * b2;                                                                            \
            T sc = sq * c2;                                                                              \
            vi = vi + sc;                                                                                \
            T d = SQRT(vi) + eps;                                                                        \
            T u = mi / d;                                                                                \
            u = u * scale;                                                                               \
            p[i] = p[i] - u;                                                                             \
            m[i] = mi;                                                                                   \
            v[i] = vi;                                                                                   \
        }                                                                                                \
    }                                                                                                    \
    static void rmsprop_##T(Py_ssize_t n, T *restrict p, const T *restrict g, T *restrict s, T *unused, \
                            const double *k)                                                            \
    {                                                                                                    \
        const T b2 = (T)k[0], c2 = (T)k[1], eps = (T)k[2], lr = (T)k[3];                                 \
        (void)unused;                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            T gi = g[i];                                                                                 \
            T sq = gi * gi;                                                                              \
            T si = s[i] * b2;                                                                            \
            sq = sq * c2;                                                                                \
            si = si + sq;                                                                                \
            p[i] = p[i] - adaptive_step_##T(si, gi, eps, lr);                                            \
            s[i] = si;                                                                                   \
        }                                                                                                \
    }                                                                                                    \
    static void adagrad_##T(Py_ssize_t n, T *restrict p, const T *restrict g, T *restrict G, T *unused, \
                            const double *k)                                                            \
    {                                                                                                    \
        const T eps = (T)k[0], lr = (T)k[1];                                                             \
        (void)unused;                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            T gi = g[i];                                                                                 \
            T Gi = G[i] + gi * gi;                                                                       \
            p[i] = p[i] - adaptive_step_##T(Gi, gi, eps, lr);                                            \
            G[i] = Gi;                                                                                   \
        }                                                                                                \
    }                                                                                                    \
    static void momentum_##T(Py_ssize_t n, T *restrict p, const T *restrict g, T *restrict v, T *unused, \
                             const double *k)                                                           \
    {                                                                                                    \
        const T b = (T)k[0], c = (T)k[1], lr = (T)k[2];                                                  \
        const int nesterov = k[3] != 0.0;                                                                \
        (void)unused;                                                                                    \
        for (Py_ssize_t i = 0; i < n; i++) {                                                             \
            T gi = g[i];                                                                                 \
            T gc = c * gi;                                                                               \
            T vi = v[i] * b;                                                                             \
            vi = vi + gc;                                                                                \
            T u;                                                                                         \
            if (nesterov) {                                                                              \
                T bv = b * vi;                                                                           \
                u = bv + gc;                                                                             \
                u = lr * u;                                                                              \
            }                                                                                            \
            else                                                                                         \
                u = lr * vi;                                                                             \
            p[i] = p[i] - u;                                                                             \
            v[i] = vi;                                                                                   \
        }                                                                                                \
    }

LOOPS(float, sqrtf)
LOOPS(double, sqrt)

typedef void (*loop_f)(Py_ssize_t, float *, const float *, float *, float *, const double *);
typedef void (*loop_d)(Py_ssize_t, double *, const double *, double *, double *, const double *);

static int
is_type(const Py_buffer *b, char code)
{
    const char *f = b->format ? b->format : "B";
    if (f[0] == '<' || f[0] == '=' || f[0] == '@')
        f++;
    return f[0] == code && f[1] == '\0';
}

static int
same_shape(const Py_buffer *a, const Py_buffer *b)
{
    if (a->ndim != b->ndim)
        return 0;
    for (int d = 0; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return 0;
    return 1;
}

static int
overlaps(const Py_buffer *a, const Py_buffer *b)
{
    uintptr_t a0 = (uintptr_t)a->buf, b0 = (uintptr_t)b->buf;
    return a0 < b0 + (uintptr_t)b->len && b0 < a0 + (uintptr_t)a->len;
}

/* update(p, g, a[, b], scalars...) for one optimizer: p and the moments a (and b) writable, g read; all
   C-contiguous, of one float type and shape, no two overlapping. True when the update was made. */
static PyObject *
update(PyObject *args, int n_moments, int n_scalars, loop_f loop_float, loop_d loop_double)
{
    double k[6];
    Py_ssize_t n_args = PyTuple_GET_SIZE(args), n_arrays = 2 + n_moments;
    if (n_args != n_arrays + n_scalars) {
        PyErr_Format(PyExc_TypeError, "takes %zd arguments, got %zd", n_arrays + n_scalars, n_args);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n_scalars; i++) {
        k[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(args, n_arrays + i));
        if (k[i] == -1.0 && PyErr_Occurred())
            return NULL;
    }
    Py_buffer bufs[4];
    Py_ssize_t got = 0;
    int ok = 1;
    for (; got < n_arrays; got++) {
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (got == 1 ? 0 : PyBUF_WRITABLE);
        if (PyObject_GetBuffer(PyTuple_GET_ITEM(args, got), &bufs[got], flags) < 0) {
            /* Not an array it can take (no buffer, strided, read-only): declined. Anything else is raised. */
            if (!PyErr_ExceptionMatches(PyExc_BufferError) && !PyErr_ExceptionMatches(PyExc_TypeError) &&
                !PyErr_ExceptionMatches(PyExc_ValueError))
                goto error;
            PyErr_Clear();
            ok = 0;
            break;
        }
    }
    if (ok) {
        char code = is_type(&bufs[0], 'f') ? 'f' : is_type(&bufs[0], 'd') ? 'd' : 0;
        for (Py_ssize_t i = 0; i < n_arrays && ok; i++)
            ok = code && is_type(&bufs[i], code) && same_shape(&bufs[i], &bufs[0]);
        for (Py_ssize_t i = 0; i < n_arrays && ok; i++)
            for (Py_ssize_t j = i + 1; j < n_arrays && ok; j++)
                ok = !overlaps(&bufs[i], &bufs[j]);
        if (ok) {
            void *b3 = n_moments > 1 ? bufs[3].buf : NULL;
            Py_BEGIN_ALLOW_THREADS
            if (code == 'f')
                loop_float(bufs[0].len / (Py_ssize_t)sizeof(float), bufs[0].buf, bufs[1].buf, bufs[2].buf, b3, k);
            else
                loop_double(bufs[0].len / (Py_ssize_t)sizeof(double), bufs[0].buf, bufs[1].buf, bufs[2].buf, b3,
                            k);
            Py_END_ALLOW_THREADS
        }
    }
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    return PyBool_FromLong(ok);
error:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&bufs[i]);
    return NULL;
}

static PyObject *
adam(PyObject *self, PyObject *args)
{
    return update(args, 2, 6, adam_float, adam_double);
}

static PyObject *
rmsprop(PyObject *self, PyObject *args)
{
    return update(args, 1, 4, rmsprop_float, rmsprop_double);
}

static PyObject *
adagrad(PyObject *self, PyObject *args)
{
    return update(args, 1, 2, adagrad_float, adagrad_double);
}

static PyObject *
momentum(PyObject *self, PyObject *args)
{
    return update(args, 1, 4, momentum_float, momentum_double);
}

static PyMethodDef methods[] = {
    {"adam", adam, METH_VARARGS,
     "adam(p, g, m, v, b1, 1-b1, b2, 1-b2, eps_term, step_scale) -> bool: Adam's update of p, m, v in place."},
    {"rmsprop", rmsprop, METH_VARARGS, "rmsprop(p, g, s, b2, 1-b2, eps, lr) -> bool: RMSProp's update of p, s."},
    {"adagrad", adagrad, METH_VARARGS, "adagrad(p, g, G, eps, lr) -> bool: Adagrad's update of p, G."},
    {"momentum", momentum, METH_VARARGS,
     "momentum(p, g, v, b, 1-b, lr, nesterov) -> bool: momentum's update of p, v (Nesterov's when true)."},
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
