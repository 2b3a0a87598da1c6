import { type GoldenBackend, useBackend } from './backend.js';
import { GOLDEN_CHECKS, type GoldenCheck, type GoldenCheckResult } from './checks/index.js';
import type { Comparison } from './compare.js';
import { openGoldenFolder } from './golden-folder.js';

/** Outcome of {@link runGoldenCheck}. */
export interface GoldenReport {
  /** Largest absolute difference over every comparison (NaN if any value was NaN). */
  readonly maxAbsDiff: number;
  /** Items compared: tensors, plus JSON-only arrays such as raw int64 hashes. */
  readonly checked: number;
  /**
   * Tensors present in the cases that no check compares (none implemented, or the check cannot
   * reproduce them on this folder), plus JSON-only items a check could not read; each is named
   * in the report with its reason.
   */
  readonly skipped: number;
  /** Report lines (groups) that failed, plus cases that could not be loaded. */
  readonly failed: number;
  readonly comparisons: ReadonlyArray<{ readonly caseName: string; readonly comparison: Comparison }>;
}

/** Options of {@link runGoldenCheck}. */
export interface GoldenRunOptions {
  /** The checks to run (default: every implemented one). */
  readonly checks?: readonly GoldenCheck[];
  /** Receives each report line (default: `console.log`). */
  readonly log?: (line: string) => void;
  /** TensorFlow.js backend for the model pieces (default `cpu`). */
  readonly backend?: GoldenBackend;
}

function formatDiff(x: number): string {
  if (x === 0 || !Number.isFinite(x)) return String(x);
  return x >= 1e-3 && x < 1e6 ? String(Number(x.toPrecision(4))) : x.toExponential(2);
}

/**
 * Checks every implemented piece against a golden folder (layout of `shared/golden/tiny`): reads
 * the cases from `index.json`, runs each check on the tensors it claims, prints one line per
 * tensor group with its largest absolute difference, a `skip` line naming every tensor that is not
 * compared and why, and a final `max_abs_diff=<x> checked=<n> skipped=<m>` line. Every tensor of a
 * case is compared, failed or skipped: none is dropped silently.
 *
 * @param dir - the golden folder
 * @param options - checks to run, line sink
 * @returns the figures of the report; `failed > 0` means a mismatch or an unreadable case
 * @throws {GoldenFolderError} when the folder's `config.json` or `index.json` cannot be read
 */
export async function runGoldenCheck(dir: string, options: GoldenRunOptions = {}): Promise<GoldenReport> {
  const { checks = GOLDEN_CHECKS, log = console.log, backend = 'cpu' } = options;
  const info = await useBackend(backend);
  const folder = await openGoldenFolder(dir);
  // Which matmuls ran matters for wasm (OpenBLAS or the wasm kernels): both must pass.
  const matmuls = info.nativeMatMul === undefined ? '' : info.nativeMatMul.active ? ', matmuls on OpenBLAS' : ', wasm matmuls';
  log(
    `golden: ${dir} (${folder.cases.length} cases; backend ${info.name}${info.adapter ? ` on ${info.adapter}` : ''}${matmuls}; checks: ${checks.map((c) => c.name).join(', ')})`,
  );
  const comparisons: Array<{ caseName: string; comparison: Comparison }> = [];
  let maxAbsDiff = 0;
  let checked = 0;
  let skipped = 0;
  let failed = 0;
  if (typeof folder.pretrained === 'string') {
    log(`pretrained: FAIL ${folder.pretrained}`);
    failed++;
  } else if (folder.pretrained !== undefined) {
    const p = folder.pretrained;
    log(`pretrained: ${p.layout} layout from ${p.location}; patching ${JSON.stringify(p.patching)}`);
  }
  for (const ref of folder.cases) {
    let goldenCase;
    try {
      goldenCase = await folder.loadCase(ref);
    } catch (e) {
      log(`[${ref.name}] ERROR ${(e as Error).message}`);
      failed++;
      continue;
    }
    const unclaimed = new Set(goldenCase.tensors.names());
    // Why a tensor is not compared yet; a later check that compares it clears the entry.
    const skipReasons = new Map<string, string>();
    for (const check of checks) {
      const claimed = [...unclaimed].filter((n) => check.claims(n));
      if (claimed.length === 0) continue;
      let result: GoldenCheckResult;
      try {
        result = await check.run(goldenCase);
      } catch (e) {
        // A piece that cannot run on this folder (e.g. a configuration the port rejects) fails its
        // tensors; the other checks still run.
        const message = (e as Error).message.replace(/\s+/g, ' ');
        result = [
          {
            group: check.name,
            items: claimed,
            values: 0,
            maxAbsDiff: Number.POSITIVE_INFINITY,
            tolerance: 0,
            ok: false,
            firstMismatch: `cannot run on this folder: ${message}`,
          },
        ];
      }
      if (typeof result === 'string') {
        // The whole case cannot be checked by this piece: its tensors stay skipped with this reason
        // (named in the report), unless a later check compares them.
        log(`[${ref.name}] skip ${check.name}: ${result}`);
        for (const n of claimed) skipReasons.set(n, `${check.name}: ${result}`);
        continue;
      }
      const outcome = Array.isArray(result) ? { comparisons: result, skipped: [] } : result;
      const covered = new Set<string>();
      for (const comparison of outcome.comparisons) {
        comparison.items.forEach((n) => covered.add(n));
        comparisons.push({ caseName: ref.name, comparison });
        checked += comparison.items.length;
        if (Number.isNaN(comparison.maxAbsDiff) || comparison.maxAbsDiff > maxAbsDiff) maxAbsDiff = comparison.maxAbsDiff;
        const status = comparison.ok ? 'ok  ' : 'FAIL';
        const kind = comparison.tolerance === 0 ? 'exact' : `tol=${comparison.tolerance}`;
        let line = `[${ref.name}] ${status} ${comparison.group.padEnd(21)} max_abs_diff=${formatDiff(comparison.maxAbsDiff)} (${kind}; ${comparison.items.length} item(s), ${comparison.values} values)`;
        if (!comparison.ok) {
          failed++;
          line += ` first mismatch: ${comparison.firstMismatch ?? 'NaN'}`;
        }
        log(line);
      }
      for (const n of covered) {
        unclaimed.delete(n);
        skipReasons.delete(n);
      }
      // Claimed items the check skipped by name (tensors, or JSON-only items it found unreadable).
      for (const skip of outcome.skipped) {
        for (const n of skip.items) {
          if (covered.has(n)) continue;
          if (unclaimed.has(n)) skipReasons.set(n, `${check.name}: ${skip.reason}`);
          else {
            // A JSON-only item: no tensor to leave in the unclaimed set, so it is reported here.
            skipped++;
            log(`[${ref.name}] skip ${n}: ${check.name}: ${skip.reason}`);
          }
        }
      }
      // A claimed tensor the check neither compared nor skipped by name is still reported.
      for (const n of claimed)
        if (!covered.has(n) && !skipReasons.has(n))
          skipReasons.set(n, `${check.name}: claimed but neither compared nor skipped by the check`);
    }
    if (unclaimed.size > 0) {
      // Every tensor not compared is counted and named, grouped by its reason.
      const byReason = new Map<string, string[]>();
      for (const n of unclaimed) {
        const reason = skipReasons.get(n) ?? 'no check implemented for it yet';
        byReason.set(reason, [...(byReason.get(reason) ?? []), n]);
      }
      for (const [reason, names] of byReason) {
        skipped += names.length;
        log(`[${ref.name}] skip ${names.length} tensor(s) (${reason}): ${names.join(', ')}`);
      }
    }
  }
  if (typeof folder.pretrained === 'object') folder.pretrained.dispose();
  log(`max_abs_diff=${formatDiff(maxAbsDiff)} checked=${checked} skipped=${skipped}`);
  return { maxAbsDiff, checked, skipped, failed, comparisons };
}
