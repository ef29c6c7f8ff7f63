// The outcome of `Lock#release`: the core hands it over in one of two encodings (one
// `Float64Array` when no node failed), and both must give the same `{ clean, report }` as the
// general `[clean, [numbers, details]]` read by `toReport`.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { packageDir } from './support/package.mjs';

const { releasedOutcome } = await import(new URL('lock.js', packageDir));
const { toReport } = await import(new URL('errors.js', packageDir));

// What the core hands over for a release: `[clean, [numbers, details]]` (see to_js.rs).
const cases = {
  clean: [true, [Float64Array.from([0, 0, 1.5, 0, 0, 2, 3, 0, NaN]), null]],
  failed: [false, [Float64Array.from([0, 0, 1, 4, 1, 0.5, 4, 3, 2]), [null, 'connection reset', 'ERR busy']]],
  refused: [true, [Float64Array.from([1, 0, 1, 1, 0, 1, 2, 0, NaN]), null]],
  missing: [],
};

function eager([clean = false, report = null]) {
  return { clean, report: toReport(report) };
}

// The single-array encoding of an outcome without failed nodes.
function packed([clean, [numbers]]) {
  return Float64Array.from([clean ? 1 : 0, ...numbers]);
}

describe('release outcome', () => {
  for (const [name, value] of Object.entries(cases)) {
    test(`${name}: equals the eager outcome`, () => {
      const outcome = releasedOutcome(value);
      assert.deepStrictEqual(Object.keys(outcome), ['clean', 'report']);
      assert.deepStrictEqual(outcome, eager(value));
      assert.deepStrictEqual(JSON.parse(JSON.stringify(releasedOutcome(value))), JSON.parse(JSON.stringify(eager(value))));
      assert.deepStrictEqual({ ...releasedOutcome(value) }, eager(value));
    });
  }

  for (const name of ['clean', 'refused']) {
    test(`${name}: the single-array encoding gives the same outcome`, () => {
      const outcome = releasedOutcome(packed(cases[name]));
      assert.deepStrictEqual(Object.keys(outcome), ['clean', 'report']);
      assert.deepStrictEqual(outcome, eager(cases[name]));
      assert.equal(outcome.report[2].latency, cases[name][1][0][8] || null);
    });
  }

  test('an unclean release in the single-array encoding', () => {
    const value = [false, [Float64Array.from([0, 0, 1, 3, 0, NaN, 2, 0, NaN]), null]];
    assert.deepStrictEqual(releasedOutcome(packed(value)), { clean: false, report: eager(value).report });
    assert.equal(releasedOutcome(packed(value)).report[1].status, 'no-answer');
  });

  test('the report is a plain data property, read the same every time', () => {
    const outcome = releasedOutcome(cases.failed);
    const first = outcome.report;
    assert.equal(outcome.report, first);
    const descriptor = Object.getOwnPropertyDescriptor(outcome, 'report');
    assert.deepStrictEqual(descriptor, { value: first, writable: true, enumerable: true, configurable: true });
    assert.equal(first[1].error.message, 'connection reset');
  });

  test('report can be assigned, before or after it is read', () => {
    const before = releasedOutcome(cases.clean);
    before.report = 'mine';
    assert.equal(before.report, 'mine');
    assert.deepStrictEqual({ ...before }, { clean: true, report: 'mine' });
    const after = releasedOutcome(cases.clean);
    void after.report;
    after.report = null;
    assert.equal(after.report, null);
  });

  test('a frozen outcome still reads the same report every time', () => {
    const outcome = Object.freeze(releasedOutcome(cases.refused));
    const report = outcome.report;
    assert.equal(outcome.report, report);
    assert.deepStrictEqual(report, eager(cases.refused).report);
  });
});
