;; The n-gram hash core of ./src/hash.ts in WebAssembly: int64 arithmetic wraps exactly like the
;; reference's torch.int64 (bytelatent/model/utils.py: rolling_polynomial_hash), so every window sum
;; is one i64 multiply-add per byte, where JavaScript needs two double products and a carry.
;;
;; hashIds(x, plen, pad, sizes, k, pow, vocab, c, out, stride)
;;   x      int32[plen]   token ids of one row chunk, behind `pad` ids of context (BOE, or the
;;                        row's previous ids)
;;   sizes  int32[k]      distinct group sizes, ascending (the largest is pad + 1)
;;   pow    int64[pad+1]  prime^m mod 2^64
;;   vocab  f64           table size V (at most 2^21)
;;   c      f64           2^32 mod V
;;   out    int32[k*stride]  out[s*stride + j]: floor-mod V of the size-s hash of window ending at
;;                        chunk position j = p + size - 1 - pad
;; Window start p shares its sum between sizes: F(p, n+1) = F(p, n) + x[p+n] * prime^n.
;; The floor-mod is the JavaScript core's: value = hi * 2^32 + lo = hi * c + lo (mod V), exact
;; below 2^53, then one correction step after the floating-point quotient.
(module
  (memory (export "memory") 1)
  (func (export "hashIds")
    (param $x i32) (param $plen i32) (param $pad i32) (param $sizes i32) (param $k i32)
    (param $pow i32) (param $v f64) (param $c f64) (param $out i32) (param $stride i32)
    (local $p i32) (local $m i32) (local $s i32) (local $size i32) (local $j i32)
    (local $sum i64) (local $xx f64) (local $r f64) (local $invV f64)
    (local.set $invV (f64.div (f64.const 1) (local.get $v)))
    (block $done
      (loop $window
        (br_if $done (i32.ge_s (local.get $p) (local.get $plen)))
        (local.set $sum (i64.const 0))
        (local.set $m (i32.const 0))
        (local.set $s (i32.const 0))
        (block $sizesDone
          (loop $sizeLoop
            (br_if $sizesDone (i32.ge_s (local.get $s) (local.get $k)))
            (local.set $size (i32.load (i32.add (local.get $sizes) (i32.shl (local.get $s) (i32.const 2)))))
            (br_if $sizesDone (i32.gt_s (i32.add (local.get $p) (local.get $size)) (local.get $plen)))
            (block $termsDone
              (loop $terms
                (br_if $termsDone (i32.ge_s (local.get $m) (local.get $size)))
                (local.set $sum
                  (i64.add (local.get $sum)
                    (i64.mul
                      (i64.extend_i32_s (i32.load (i32.add (local.get $x) (i32.shl (i32.add (local.get $p) (local.get $m)) (i32.const 2)))))
                      (i64.load (i32.add (local.get $pow) (i32.shl (local.get $m) (i32.const 3)))))))
                (local.set $m (i32.add (local.get $m) (i32.const 1)))
                (br $terms)))
            (local.set $j (i32.sub (i32.add (local.get $p) (i32.sub (local.get $size) (i32.const 1))) (local.get $pad)))
            (if (i32.ge_s (local.get $j) (i32.const 0))
              (then
                (local.set $xx
                  (f64.add
                    (f64.mul (f64.convert_i64_s (i64.shr_s (local.get $sum) (i64.const 32))) (local.get $c))
                    (f64.convert_i64_u (i64.and (local.get $sum) (i64.const 0xffffffff)))))
                (local.set $r (f64.sub (local.get $xx) (f64.mul (f64.floor (f64.mul (local.get $xx) (local.get $invV))) (local.get $v))))
                (if (f64.lt (local.get $r) (f64.const 0)) (then (local.set $r (f64.add (local.get $r) (local.get $v)))))
                (if (f64.ge (local.get $r) (local.get $v)) (then (local.set $r (f64.sub (local.get $r) (local.get $v)))))
                (i32.store
                  (i32.add (local.get $out) (i32.shl (i32.add (i32.mul (local.get $s) (local.get $stride)) (local.get $j)) (i32.const 2)))
                  (i32.trunc_f64_s (local.get $r)))))
            (local.set $s (i32.add (local.get $s) (i32.const 1)))
            (br $sizeLoop)))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $window)))))
