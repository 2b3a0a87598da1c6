/*
 * @bytelatent/native-sgemm: OpenBLAS cblas_sgemm on the memory of JavaScript Float32Arrays.
 *
 * Every entry point validates its arguments completely before BLAS sees them: types, integer
 * ranges, leading dimensions (OpenBLAS would otherwise print an xerbla message and return without
 * computing), and that every element BLAS reads or writes lies inside its typed array. Invalid
 * input throws a JavaScript TypeError or RangeError with a code; nothing here may crash the
 * process, because the arrays are often views of a WebAssembly.Memory (the tfjs wasm heap), where
 * an out-of-bounds write would silently corrupt unrelated tensors.
 *
 * Row-major layout throughout (CblasRowMajor), as tfjs stores tensors.
 */
#define NAPI_VERSION 8
#include <node_api.h>

#include <cblas.h>
#include <math.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Largest dimension, leading dimension and count accepted: BLAS takes them as (32-bit) int. */
#define MAX_DIM 2147483647.0
/* Largest element offset or stride accepted: exactly representable in a double (2^53). */
#define MAX_OFFSET 9007199254740992.0

/* Returns NULL from the calling napi_callback after throwing, when a napi call fails. */
#define NAPI_OK(env, call)                                                                 \
  do {                                                                                     \
    if ((call) != napi_ok) {                                                               \
      throw_last_error(env);                                                               \
      return NULL;                                                                         \
    }                                                                                      \
  } while (0)

static void throw_last_error(napi_env env) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  const char *message = info != NULL && info->error_message != NULL ? info->error_message : "N-API call failed";
  napi_throw_error(env, "ERR_NATIVE_SGEMM_NAPI", message);
}

static void throw_type(napi_env env, const char *fn, const char *what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", fn, what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", message);
}

static void throw_range(napi_env env, const char *fn, const char *what) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", fn, what);
  napi_throw_range_error(env, "ERR_OUT_OF_RANGE", message);
}

/* A boolean argument (the transpose flags). */
static bool get_bool(napi_env env, napi_value value, const char *fn, const char *name, bool *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_boolean) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a boolean", name);
    throw_type(env, fn, what);
    return false;
  }
  return napi_get_value_bool(env, value, out) == napi_ok;
}

/* A finite number argument (alpha, beta). */
static bool get_number(napi_env env, napi_value value, const char *fn, const char *name, double *out) {
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a number", name);
    throw_type(env, fn, what);
    return false;
  }
  if (napi_get_value_double(env, value, out) != napi_ok) return false;
  if (!isfinite(*out)) {
    char what[128];
    snprintf(what, sizeof what, "%s must be finite, got %g", name, *out);
    throw_range(env, fn, what);
    return false;
  }
  return true;
}

/* An integer argument in [min, max]. */
static bool get_int(napi_env env, napi_value value, const char *fn, const char *name, double min, double max, int64_t *out) {
  double d;
  napi_valuetype type;
  if (napi_typeof(env, value, &type) != napi_ok || type != napi_number) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a number", name);
    throw_type(env, fn, what);
    return false;
  }
  if (napi_get_value_double(env, value, &d) != napi_ok) return false;
  if (!(d >= min && d <= max) || floor(d) != d) {
    char what[160];
    snprintf(what, sizeof what, "%s must be an integer in [%.0f, %.0f], got %g", name, min, max, d);
    throw_range(env, fn, what);
    return false;
  }
  *out = (int64_t)d;
  return true;
}

/* A Float32Array argument: its data pointer and length in elements. */
static bool get_f32(napi_env env, napi_value value, const char *fn, const char *name, float **data, int64_t *length) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a Float32Array", name);
    throw_type(env, fn, what);
    return false;
  }
  napi_typedarray_type type;
  size_t n = 0;
  void *ptr = NULL;
  if (napi_get_typedarray_info(env, value, &type, &n, &ptr, NULL, NULL) != napi_ok) {
    throw_last_error(env);
    return false;
  }
  if (type != napi_float32_array) {
    char what[128];
    snprintf(what, sizeof what, "%s must be a Float32Array", name);
    throw_type(env, fn, what);
    return false;
  }
  /* A detached buffer reports length 0 (and possibly a NULL pointer): any access is then out of
     bounds and rejected below. */
  *data = (float *)ptr;
  *length = (int64_t)n;
  return true;
}

/* Elements spanned by a stored rows x cols row-major matrix with leading dimension ld. */
static int64_t extent(int64_t rows, int64_t cols, int64_t ld) {
  return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols;
}

/* One operand as stored: rows x cols with leading dimension ld. */
typedef struct {
  const char *name;
  float *data;
  int64_t length;
  int64_t rows, cols, ld;
  int64_t offset;          /* base element offset */
  int64_t stride;          /* per batch element, when offsets == NULL */
  const int32_t *offsets;  /* per batch element (added to offset), or NULL */
  int64_t lo, hi;          /* bounding element range [lo, hi) touched over all batch elements */
} operand;

/* The arguments every product shares: C = alpha * op(A) * op(B) + beta * C with op(A) m x k. */
typedef struct {
  bool ta, tb;
  int64_t m, n, k;
  double alpha, beta;
} product;

/* Checks the leading dimension, then that every batch element lies inside the array; fills lo, hi. */
static bool check_operand(napi_env env, const char *fn, operand *op, int64_t batch) {
  char what[384];
  int64_t min_ld = op->cols > 1 ? op->cols : 1;
  if (op->ld < min_ld) {
    snprintf(what, sizeof what, "leading dimension of %s must be at least %lld (its stored columns), got %lld", op->name, (long long)min_ld, (long long)op->ld);
    throw_range(env, fn, what);
    return false;
  }
  int64_t size = extent(op->rows, op->cols, op->ld);
  op->lo = op->offset;
  op->hi = op->offset;
  if (size == 0 || batch == 0) return true;
  int64_t first, last;
  if (op->offsets == NULL) {
    first = op->offset;
    /* stride <= 2^53 and batch < 2^31: the product can exceed int64, so check before multiplying. */
    if (batch > 1 && op->stride > (INT64_MAX - op->offset) / (batch - 1)) {
      snprintf(what, sizeof what, "%s: the last batch element lies beyond the array", op->name);
      throw_range(env, fn, what);
      return false;
    }
    last = op->offset + (batch - 1) * op->stride;
  } else {
    int64_t min = INT64_MAX, max = INT64_MIN;
    for (int64_t i = 0; i < batch; i++) {
      int64_t o = op->offsets[i];
      if (o < 0) {
        snprintf(what, sizeof what, "%s: batch offset %lld is negative (%lld)", op->name, (long long)i, (long long)o);
        throw_range(env, fn, what);
        return false;
      }
      if (o < min) min = o;
      if (o > max) max = o;
    }
    first = op->offset + min;
    last = op->offset + max;
  }
  if (last + size > op->length) {
    snprintf(what, sizeof what, "%s is too short: a %lldx%lld matrix (leading dimension %lld) at element offset %lld needs %lld elements, it has %lld",
             op->name, (long long)op->rows, (long long)op->cols, (long long)op->ld, (long long)last, (long long)(last + size), (long long)op->length);
    throw_range(env, fn, what);
    return false;
  }
  op->lo = first;
  op->hi = last + size;
  return true;
}

/* Whether the element ranges [lo, hi) of two operands overlap in memory (they may share a buffer). */
static bool overlaps(const operand *x, const operand *y) {
  if (x->hi == x->lo || y->hi == y->lo) return false;
  uintptr_t x0 = (uintptr_t)(x->data + x->lo), x1 = (uintptr_t)(x->data + x->hi);
  uintptr_t y0 = (uintptr_t)(y->data + y->lo), y1 = (uintptr_t)(y->data + y->hi);
  return x0 < y1 && y0 < x1;
}

/* A per-batch stride (number) or explicit offsets (Int32Array of at least `batch` elements). */
static bool get_stride_or_offsets(napi_env env, napi_value value, const char *fn, const char *name, int64_t batch, bool allow_offsets, operand *op) {
  bool is_typed = false;
  if (allow_offsets && napi_is_typedarray(env, value, &is_typed) == napi_ok && is_typed) {
    napi_typedarray_type type;
    size_t n = 0;
    void *ptr = NULL;
    if (napi_get_typedarray_info(env, value, &type, &n, &ptr, NULL, NULL) != napi_ok) {
      throw_last_error(env);
      return false;
    }
    if (type != napi_int32_array) {
      char what[128];
      snprintf(what, sizeof what, "%s must be a number (stride) or an Int32Array (offsets)", name);
      throw_type(env, fn, what);
      return false;
    }
    if ((int64_t)n < batch) {
      char what[160];
      snprintf(what, sizeof what, "%s has %lld offsets, fewer than the batch (%lld)", name, (long long)n, (long long)batch);
      throw_range(env, fn, what);
      return false;
    }
    op->offsets = (const int32_t *)ptr;
    op->stride = 0;
    return true;
  }
  napi_valuetype vt;
  if (napi_typeof(env, value, &vt) != napi_ok || vt != napi_number) {
    char what[128];
    snprintf(what, sizeof what, allow_offsets ? "%s must be a number (stride) or an Int32Array (offsets)" : "%s must be a number", name);
    throw_type(env, fn, what);
    return false;
  }
  op->offsets = NULL;
  return get_int(env, value, fn, name, 0, MAX_OFFSET, &op->stride);
}

/* C = beta * C for one m x n matrix (BLAS semantics: beta == 0 clears, even NaN). */
static void scale(float *c, int64_t m, int64_t n, int64_t ldc, float beta) {
  for (int64_t i = 0; i < m; i++) {
    float *row = c + i * ldc;
    if (beta == 0.0f) memset(row, 0, (size_t)n * sizeof(float));
    else if (beta != 1.0f) for (int64_t j = 0; j < n; j++) row[j] *= beta;
  }
}

static int64_t offset_of(const operand *op, int64_t i) {
  return op->offset + (op->offsets != NULL ? (int64_t)op->offsets[i] : i * op->stride);
}

/*
 * Threads per product. OpenBLAS splits every product over all its threads once m·n·k exceeds its
 * own small cut-off (about 2.6e5), and its threads then spin for ~0.1 s before they sleep: for a
 * model whose products are all a few million or less, that costs the rest of the step more than
 * the second thread saves on the products (tools/bench native-threads; see the README). So a
 * product runs on floor(m·n·k / min_work_per_thread) threads, at least one and at most the
 * configured count, and the configured count is set again afterwards (openblas_set_num_threads
 * only stores the count once the thread pool exists: ~6 ns). min_work_per_thread = 0 leaves every
 * product to OpenBLAS.
 *
 * configured_threads is the count of setNumThreads (initially OpenBLAS's own: OPENBLAS_NUM_THREADS
 * or one per core). It is kept here rather than read back from OpenBLAS before each product, so
 * that products running at once in several worker threads cannot leave OpenBLAS on the reduced
 * count of one of them.
 */
#define DEFAULT_MIN_WORK_PER_THREAD 3000000LL
static _Atomic long long min_work_per_thread = DEFAULT_MIN_WORK_PER_THREAD;
static _Atomic int configured_threads = 0; /* set by the first module initialisation */

/* The threads one m x n x k product runs on, given the configured count. */
static int threads_for(int64_t m, int64_t n, int64_t k, int configured) {
  long long work_per_thread = atomic_load(&min_work_per_thread);
  if (configured <= 1 || work_per_thread == 0) return configured;
  double threads = floor((double)m * (double)n * (double)k / (double)work_per_thread);
  return threads >= configured ? configured : threads < 1 ? 1 : (int)threads;
}

/*
 * The shared body of sgemm and sgemmBatched once arguments are read: checks, then the products.
 * k == 0 is handled here rather than by BLAS so that C = beta * C holds exactly as specified on
 * every BLAS (OpenBLAS 0.3.21 does it too, this merely does not rely on it). Every product of a
 * batch has the same size, so the thread count is chosen once per call: OpenBLAS parallelises
 * each product on its own, never the batch, so the batch size does not enter it.
 */
static napi_value run(napi_env env, const char *fn, const product *p, operand *a, operand *b, operand *c, int64_t batch) {
  int64_t m = p->m, n = p->n, k = p->k;
  a->rows = p->ta ? k : m;
  a->cols = p->ta ? m : k;
  b->rows = p->tb ? n : k;
  b->cols = p->tb ? k : n;
  c->rows = m;
  c->cols = n;
  if (!check_operand(env, fn, a, batch) || !check_operand(env, fn, b, batch) || !check_operand(env, fn, c, batch)) return NULL;
  int64_t c_size = extent(m, n, c->ld);
  if (batch > 1 && c_size > 0 && c->stride < c_size) {
    char what[160];
    snprintf(what, sizeof what, "the batch elements of c overlap: its stride (%lld) is below the %lld elements of one result", (long long)c->stride, (long long)c_size);
    throw_range(env, fn, what);
    return NULL;
  }
  /* BLAS reads A and B while writing C: an overlap would give wrong results without any error. */
  if (overlaps(c, a) || overlaps(c, b)) {
    throw_range(env, fn, "c must not overlap a or b");
    return NULL;
  }
  if (m == 0 || n == 0 || batch == 0) return NULL;
  float fa = (float)p->alpha, fb = (float)p->beta;
  enum CBLAS_TRANSPOSE opa = p->ta ? CblasTrans : CblasNoTrans, opb = p->tb ? CblasTrans : CblasNoTrans;
  int configured = atomic_load(&configured_threads);
  int threads = threads_for(m, n, k, configured);
  bool reduced = threads != configured && k > 0 && fa != 0.0f;
  if (reduced) openblas_set_num_threads(threads);
  for (int64_t i = 0; i < batch; i++) {
    float *cp = c->data + offset_of(c, i);
    if (k == 0 || fa == 0.0f) {
      scale(cp, m, n, c->ld, fb);
      continue;
    }
    cblas_sgemm(CblasRowMajor, opa, opb, (int)m, (int)n, (int)k, fa, a->data + offset_of(a, i), (int)a->ld, b->data + offset_of(b, i), (int)b->ld, fb, cp,
                (int)c->ld);
  }
  /* The count now configured: setNumThreads may have run in another worker thread meanwhile. */
  if (reduced) openblas_set_num_threads(atomic_load(&configured_threads));
  return NULL;
}

/* Reads exactly `count` arguments into argv, else throws a TypeError. */
static bool get_args(napi_env env, napi_callback_info info, const char *fn, size_t count, napi_value *argv) {
  size_t argc = count;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_last_error(env);
    return false;
  }
  if (argc != count) {
    char what[96];
    snprintf(what, sizeof what, "expected %zu arguments, got %zu", count, argc);
    throw_type(env, fn, what);
    return false;
  }
  return true;
}

/* The leading arguments of sgemm and sgemmBatched: transA, transB, m, n, k, alpha. */
static bool get_product(napi_env env, const napi_value *argv, const char *fn, product *p) {
  return get_bool(env, argv[0], fn, "transA", &p->ta) && get_bool(env, argv[1], fn, "transB", &p->tb) &&
         get_int(env, argv[2], fn, "m", 0, MAX_DIM, &p->m) && get_int(env, argv[3], fn, "n", 0, MAX_DIM, &p->n) &&
         get_int(env, argv[4], fn, "k", 0, MAX_DIM, &p->k) && get_number(env, argv[5], fn, "alpha", &p->alpha);
}

/*
 * One operand's arguments, from argv[0]: the Float32Array, its element offset, then (batched only)
 * its stride, or for a and b optionally an Int32Array of offsets, then its leading dimension. The
 * names in error messages follow op->name: aOffset, aStride, lda.
 */
static bool get_operand(napi_env env, const napi_value *argv, const char *fn, int64_t batch, bool batched, bool allow_offsets, operand *op) {
  char offset_name[16], stride_name[16], ld_name[16];
  snprintf(offset_name, sizeof offset_name, "%sOffset", op->name);
  snprintf(stride_name, sizeof stride_name, "%sStride", op->name);
  snprintf(ld_name, sizeof ld_name, "ld%s", op->name);
  size_t ld_at = batched ? 3 : 2;
  return get_f32(env, argv[0], fn, op->name, &op->data, &op->length) && get_int(env, argv[1], fn, offset_name, 0, MAX_OFFSET, &op->offset) &&
         (!batched || get_stride_or_offsets(env, argv[2], fn, stride_name, batch, allow_offsets, op)) &&
         get_int(env, argv[ld_at], fn, ld_name, 1, MAX_DIM, &op->ld);
}

/*
 * sgemm(transA, transB, m, n, k, alpha, a, aOffset, lda, b, bOffset, ldb, beta, c, cOffset, ldc)
 * C[m x n] = alpha * op(A) * op(B) + beta * C, row-major, offsets in elements.
 */
static napi_value js_sgemm(napi_env env, napi_callback_info info) {
  static const char *fn = "sgemm";
  napi_value argv[16];
  product p;
  operand a = {.name = "a"}, b = {.name = "b"}, c = {.name = "c"};
  if (!get_args(env, info, fn, 16, argv) || !get_product(env, argv, fn, &p) || !get_operand(env, argv + 6, fn, 1, false, false, &a) ||
      !get_operand(env, argv + 9, fn, 1, false, false, &b) || !get_number(env, argv[12], fn, "beta", &p.beta) ||
      !get_operand(env, argv + 13, fn, 1, false, false, &c)) {
    return NULL;
  }
  return run(env, fn, &p, &a, &b, &c, 1);
}

/*
 * sgemmBatched(transA, transB, m, n, k, alpha, a, aOffset, aStride, lda, b, bOffset, bStride, ldb,
 *              beta, c, cOffset, cStride, ldc, batch)
 * For i in [0, batch): C_i = alpha * op(A_i) * op(B_i) + beta * C_i, where X_i starts at element
 * xOffset + i * xStride, or at xOffset + xStride[i] when xStride (a or b only) is an Int32Array of
 * offsets (for broadcast batch shapes). A stride of 0 reuses one matrix for every batch element.
 */
static napi_value js_sgemm_batched(napi_env env, napi_callback_info info) {
  static const char *fn = "sgemmBatched";
  napi_value argv[20];
  int64_t batch;
  product p;
  operand a = {.name = "a"}, b = {.name = "b"}, c = {.name = "c"};
  /* The batch is read first: the offsets arrays are checked against it. */
  if (!get_args(env, info, fn, 20, argv) || !get_int(env, argv[19], fn, "batch", 0, MAX_DIM, &batch) || !get_product(env, argv, fn, &p) ||
      !get_operand(env, argv + 6, fn, batch, true, true, &a) || !get_operand(env, argv + 10, fn, batch, true, true, &b) ||
      !get_number(env, argv[14], fn, "beta", &p.beta) || !get_operand(env, argv + 15, fn, batch, true, false, &c)) {
    return NULL;
  }
  return run(env, fn, &p, &a, &b, &c, batch);
}

/* Reads the one integer argument of a setter, in [min, max]; else throws. */
static bool get_setter_arg(napi_env env, napi_callback_info info, const char *fn, const char *name, double min, double max, int64_t *out) {
  size_t argc = 1;
  napi_value argv[1];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    throw_last_error(env);
    return false;
  }
  if (argc != 1) {
    throw_type(env, fn, "expected 1 argument");
    return false;
  }
  return get_int(env, argv[0], fn, name, min, max, out);
}

/* An Int32Array argument: its data pointer and length in elements. */
static bool get_i32(napi_env env, napi_value value, const char *fn, const char *name, int32_t **data, int64_t *length) {
  bool is_typed = false;
  napi_typedarray_type type;
  size_t n = 0;
  void *ptr = NULL;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed || napi_get_typedarray_info(env, value, &type, &n, &ptr, NULL, NULL) != napi_ok ||
      type != napi_int32_array) {
    char what[128];
    snprintf(what, sizeof what, "%s must be an Int32Array", name);
    throw_type(env, fn, what);
    return false;
  }
  *data = (int32_t *)ptr;
  *length = (int64_t)n;
  return true;
}

/*
 * swiglu(gate, up, out): out[i] = gate[i] * up[i] / (1 + exp(-gate[i])), SwiGLU's gate (silu(g) * u).
 * The three arrays have the same length. An element-wise pass with an exponential: in C, several
 * times faster than JavaScript's Math.exp.
 */
static napi_value js_swiglu(napi_env env, napi_callback_info info) {
  static const char *fn = "swiglu";
  napi_value argv[3];
  float *g, *u, *y;
  int64_t ng, nu, ny;
  if (!get_args(env, info, fn, 3, argv) || !get_f32(env, argv[0], fn, "gate", &g, &ng) || !get_f32(env, argv[1], fn, "up", &u, &nu) ||
      !get_f32(env, argv[2], fn, "out", &y, &ny)) {
    return NULL;
  }
  if (ng != nu || ng != ny) {
    char what[192];
    snprintf(what, sizeof what, "gate, up and out must have the same length, got %lld, %lld and %lld", (long long)ng, (long long)nu, (long long)ny);
    throw_range(env, fn, what);
    return NULL;
  }
  for (int64_t i = 0; i < ng; i++) {
    float x = g[i];
    y[i] = x * u[i] / (1.0f + expf(-x));
  }
  return NULL;
}

/*
 * softmaxRows(y, offset, rows, width, ld, scale, bias, biasOffsets, valid): in place, for each row r
 * of the rows x width matrix at y[offset] (leading dimension ld):
 *   y_r = softmax(y_r * scale + bias[biasOffsets[r] ..]) * valid[r]
 * (a row with valid[r] == 0 becomes 0; the sum is accumulated in double precision; terms below
 * float32's exp range are 0 without calling exp). Attention's scale, additive mask, softmax and
 * empty-row zeroing in one pass.
 */
static napi_value js_softmax_rows(napi_env env, napi_callback_info info) {
  static const char *fn = "softmaxRows";
  napi_value argv[9];
  float *y, *bias, *valid;
  int32_t *offsets;
  int64_t ny, nbias, nvalid, noffsets, offset, rows, width, ld;
  double scale;
  if (!get_args(env, info, fn, 9, argv) || !get_f32(env, argv[0], fn, "y", &y, &ny) || !get_int(env, argv[1], fn, "offset", 0, MAX_OFFSET, &offset) ||
      !get_int(env, argv[2], fn, "rows", 0, MAX_DIM, &rows) || !get_int(env, argv[3], fn, "width", 0, MAX_DIM, &width) ||
      !get_int(env, argv[4], fn, "ld", 1, MAX_DIM, &ld) || !get_number(env, argv[5], fn, "scale", &scale) || !get_f32(env, argv[6], fn, "bias", &bias, &nbias) ||
      !get_i32(env, argv[7], fn, "biasOffsets", &offsets, &noffsets) || !get_f32(env, argv[8], fn, "valid", &valid, &nvalid)) {
    return NULL;
  }
  char what[256];
  if (ld < width) {
    snprintf(what, sizeof what, "ld (%lld) must be at least width (%lld)", (long long)ld, (long long)width);
    throw_range(env, fn, what);
    return NULL;
  }
  if (offset + extent(rows, width, ld) > ny) {
    snprintf(what, sizeof what, "the %lld x %lld matrix at %lld reaches past the %lld elements of y", (long long)rows, (long long)width, (long long)offset, (long long)ny);
    throw_range(env, fn, what);
    return NULL;
  }
  if (noffsets < rows || nvalid < rows) {
    snprintf(what, sizeof what, "biasOffsets (%lld) and valid (%lld) need an entry per row (%lld)", (long long)noffsets, (long long)nvalid, (long long)rows);
    throw_range(env, fn, what);
    return NULL;
  }
  for (int64_t r = 0; r < rows; r++) {
    if (offsets[r] < 0 || (int64_t)offsets[r] + width > nbias) {
      snprintf(what, sizeof what, "row %lld's bias at %d reaches past the %lld elements of bias", (long long)r, offsets[r], (long long)nbias);
      throw_range(env, fn, what);
      return NULL;
    }
  }
  const float s = (float)scale;
  for (int64_t r = 0; r < rows; r++) {
    float *row = y + offset + r * ld;
    const float *b = bias + offsets[r];
    const float v = valid[r];
    if (v == 0.0f) {
      memset(row, 0, (size_t)width * sizeof(float));
      continue;
    }
    float max = -INFINITY;
    for (int64_t j = 0; j < width; j++) {
      float x = row[j] * s + b[j];
      row[j] = x;
      if (x > max) max = x;
    }
    double sum = 0;
    for (int64_t j = 0; j < width; j++) {
      float d = row[j] - max;
      float e = d < -104.0f ? 0.0f : expf(d);
      row[j] = e;
      sum += e;
    }
    const float f = (float)(v / sum);
    for (int64_t j = 0; j < width; j++) row[j] *= f;
  }
  return NULL;
}

/* setNumThreads(n): OpenBLAS's thread count for later calls (process-wide). */
static napi_value js_set_num_threads(napi_env env, napi_callback_info info) {
  int64_t threads;
  if (!get_setter_arg(env, info, "setNumThreads", "threads", 1, 1024, &threads)) return NULL;
  openblas_set_num_threads((int)threads);
  /* Read back: OpenBLAS caps the count at its build's maximum. */
  atomic_store(&configured_threads, openblas_get_num_threads());
  return NULL;
}

/* getNumThreads(): OpenBLAS's current thread count (between calls, the configured one). */
static napi_value js_get_num_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  NAPI_OK(env, napi_create_int32(env, openblas_get_num_threads(), &out));
  return out;
}

/* setMinWorkPerThread(work): the m·n·k a product needs per thread it runs on; 0 leaves it to OpenBLAS. */
static napi_value js_set_min_work_per_thread(napi_env env, napi_callback_info info) {
  int64_t work;
  if (!get_setter_arg(env, info, "setMinWorkPerThread", "work", 0, MAX_OFFSET, &work)) return NULL;
  atomic_store(&min_work_per_thread, (long long)work);
  return NULL;
}

/* getMinWorkPerThread(): the current value (initially DEFAULT_MIN_WORK_PER_THREAD). */
static napi_value js_get_min_work_per_thread(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  NAPI_OK(env, napi_create_double(env, (double)atomic_load(&min_work_per_thread), &out));
  return out;
}

/* config(): OpenBLAS's build configuration and the CPU core it dispatched to. */
static napi_value js_config(napi_env env, napi_callback_info info) {
  (void)info;
  char text[512];
  const char *config = openblas_get_config();
  const char *core = openblas_get_corename();
  snprintf(text, sizeof text, "%s (core %s)", config != NULL ? config : "OpenBLAS", core != NULL ? core : "unknown");
  napi_value out;
  NAPI_OK(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &out));
  return out;
}

NAPI_MODULE_INIT() {
  /* Once per process (the library is shared by every worker thread that loads the addon). */
  int unset = 0;
  atomic_compare_exchange_strong(&configured_threads, &unset, openblas_get_num_threads());
  napi_property_descriptor props[] = {
      {"sgemm", NULL, js_sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgemmBatched", NULL, js_sgemm_batched, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNumThreads", NULL, js_set_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getNumThreads", NULL, js_get_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setMinWorkPerThread", NULL, js_set_min_work_per_thread, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getMinWorkPerThread", NULL, js_get_min_work_per_thread, NULL, NULL, NULL, napi_enumerable, NULL},
      {"config", NULL, js_config, NULL, NULL, NULL, napi_enumerable, NULL},
      {"swiglu", NULL, js_swiglu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmaxRows", NULL, js_softmax_rows, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
