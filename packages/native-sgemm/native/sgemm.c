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
 * The shared body of sgemm and sgemmBatched once arguments are read: checks, then the products.
 * k == 0 is handled here rather than by BLAS so that C = beta * C holds exactly as specified on
 * every BLAS (OpenBLAS 0.3.21 does it too, this merely does not rely on it).
 */
static napi_value run(napi_env env, const char *fn, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, double beta,
                      operand *a, operand *b, operand *c, int64_t batch) {
  a->rows = ta ? k : m;
  a->cols = ta ? m : k;
  b->rows = tb ? n : k;
  b->cols = tb ? k : n;
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
  float fa = (float)alpha, fb = (float)beta;
  enum CBLAS_TRANSPOSE opa = ta ? CblasTrans : CblasNoTrans, opb = tb ? CblasTrans : CblasNoTrans;
  for (int64_t i = 0; i < batch; i++) {
    float *cp = c->data + offset_of(c, i);
    if (k == 0 || fa == 0.0f) {
      scale(cp, m, n, c->ld, fb);
      continue;
    }
    cblas_sgemm(CblasRowMajor, opa, opb, (int)m, (int)n, (int)k, fa, a->data + offset_of(a, i), (int)a->ld, b->data + offset_of(b, i), (int)b->ld, fb, cp,
                (int)c->ld);
  }
  return NULL;
}

/*
 * sgemm(transA, transB, m, n, k, alpha, a, aOffset, lda, b, bOffset, ldb, beta, c, cOffset, ldc)
 * C[m x n] = alpha * op(A) * op(B) + beta * C, row-major, offsets in elements.
 */
static napi_value js_sgemm(napi_env env, napi_callback_info info) {
  static const char *fn = "sgemm";
  size_t argc = 16;
  napi_value argv[16];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 16) {
    char what[96];
    snprintf(what, sizeof what, "expected 16 arguments, got %zu", argc);
    throw_type(env, fn, what);
    return NULL;
  }
  bool ta, tb;
  int64_t m, n, k;
  double alpha, beta;
  operand a = {.name = "a"}, b = {.name = "b"}, c = {.name = "c"};
  if (!get_bool(env, argv[0], fn, "transA", &ta) || !get_bool(env, argv[1], fn, "transB", &tb) ||
      !get_int(env, argv[2], fn, "m", 0, MAX_DIM, &m) || !get_int(env, argv[3], fn, "n", 0, MAX_DIM, &n) ||
      !get_int(env, argv[4], fn, "k", 0, MAX_DIM, &k) || !get_number(env, argv[5], fn, "alpha", &alpha) ||
      !get_f32(env, argv[6], fn, "a", &a.data, &a.length) || !get_int(env, argv[7], fn, "aOffset", 0, MAX_OFFSET, &a.offset) ||
      !get_int(env, argv[8], fn, "lda", 1, MAX_DIM, &a.ld) || !get_f32(env, argv[9], fn, "b", &b.data, &b.length) ||
      !get_int(env, argv[10], fn, "bOffset", 0, MAX_OFFSET, &b.offset) || !get_int(env, argv[11], fn, "ldb", 1, MAX_DIM, &b.ld) ||
      !get_number(env, argv[12], fn, "beta", &beta) || !get_f32(env, argv[13], fn, "c", &c.data, &c.length) ||
      !get_int(env, argv[14], fn, "cOffset", 0, MAX_OFFSET, &c.offset) || !get_int(env, argv[15], fn, "ldc", 1, MAX_DIM, &c.ld)) {
    return NULL;
  }
  return run(env, fn, ta, tb, m, n, k, alpha, beta, &a, &b, &c, 1);
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
  size_t argc = 20;
  napi_value argv[20];
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 20) {
    char what[96];
    snprintf(what, sizeof what, "expected 20 arguments, got %zu", argc);
    throw_type(env, fn, what);
    return NULL;
  }
  bool ta, tb;
  int64_t m, n, k, batch;
  double alpha, beta;
  operand a = {.name = "a"}, b = {.name = "b"}, c = {.name = "c"};
  /* The batch is read first: the offsets arrays are checked against it. */
  if (!get_int(env, argv[19], fn, "batch", 0, MAX_DIM, &batch) || !get_bool(env, argv[0], fn, "transA", &ta) ||
      !get_bool(env, argv[1], fn, "transB", &tb) || !get_int(env, argv[2], fn, "m", 0, MAX_DIM, &m) ||
      !get_int(env, argv[3], fn, "n", 0, MAX_DIM, &n) || !get_int(env, argv[4], fn, "k", 0, MAX_DIM, &k) ||
      !get_number(env, argv[5], fn, "alpha", &alpha) || !get_f32(env, argv[6], fn, "a", &a.data, &a.length) ||
      !get_int(env, argv[7], fn, "aOffset", 0, MAX_OFFSET, &a.offset) || !get_stride_or_offsets(env, argv[8], fn, "aStride", batch, true, &a) ||
      !get_int(env, argv[9], fn, "lda", 1, MAX_DIM, &a.ld) || !get_f32(env, argv[10], fn, "b", &b.data, &b.length) ||
      !get_int(env, argv[11], fn, "bOffset", 0, MAX_OFFSET, &b.offset) || !get_stride_or_offsets(env, argv[12], fn, "bStride", batch, true, &b) ||
      !get_int(env, argv[13], fn, "ldb", 1, MAX_DIM, &b.ld) || !get_number(env, argv[14], fn, "beta", &beta) ||
      !get_f32(env, argv[15], fn, "c", &c.data, &c.length) || !get_int(env, argv[16], fn, "cOffset", 0, MAX_OFFSET, &c.offset) ||
      !get_stride_or_offsets(env, argv[17], fn, "cStride", batch, false, &c) || !get_int(env, argv[18], fn, "ldc", 1, MAX_DIM, &c.ld)) {
    return NULL;
  }
  return run(env, fn, ta, tb, m, n, k, alpha, beta, &a, &b, &c, batch);
}

/* setNumThreads(n): OpenBLAS's thread count for later calls (process-wide). */
static napi_value js_set_num_threads(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  int64_t threads;
  NAPI_OK(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc != 1) {
    throw_type(env, "setNumThreads", "expected 1 argument");
    return NULL;
  }
  if (!get_int(env, argv[0], "setNumThreads", "threads", 1, 1024, &threads)) return NULL;
  openblas_set_num_threads((int)threads);
  return NULL;
}

/* getNumThreads(): OpenBLAS's current thread count. */
static napi_value js_get_num_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value out;
  NAPI_OK(env, napi_create_int32(env, openblas_get_num_threads(), &out));
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
  napi_property_descriptor props[] = {
      {"sgemm", NULL, js_sgemm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgemmBatched", NULL, js_sgemm_batched, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setNumThreads", NULL, js_set_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getNumThreads", NULL, js_get_num_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"config", NULL, js_config, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}
