import {test} from 'node:test';
import assert from 'node:assert/strict';
import {
  FilterError,
  compileFilter,
  compileMachineFilter,
  formatFilterError,
  globToLike,
  parseDuration,
  parseFilter,
  type FieldTerm,
  type MachineFilterRecord,
  type TextTerm,
} from '../source/db/filter.js';

const NOW = 1_700_000_000;

function catchFilterError(fn: () => unknown): FilterError {
  try {
    fn();
  } catch (e) {
    if (e instanceof FilterError) return e;
    throw e;
  }
  assert.fail('expected a FilterError');
}

test('the issue example parses into eight terms with positions', () => {
  const text = 'status:failed system:aarch64-linux jobset:nixpkgs/trunk job~^python3 machine:builder1 age>1h id:1200..1300 !status:succeeded';
  const ast = parseFilter(text);
  assert.equal(ast.terms.length, 8);
  const fields = ast.terms.map((t) => (t as FieldTerm).field);
  assert.deepEqual(fields, ['status', 'system', 'jobset', 'job', 'machine', 'age', 'id', 'status']);
  const jobset = ast.terms[2] as FieldTerm;
  assert.equal(jobset.span.position, text.indexOf('jobset:'));
  assert.deepEqual(jobset.items, [{type: 'jobset', project: {kind: 'literal', value: 'nixpkgs'}, jobset: {kind: 'literal', value: 'trunk'}}]);
  const job = ast.terms[3] as FieldTerm;
  assert.equal(job.op, '~');
  assert.equal(job.regex?.sql, '^python3');
  const id = ast.terms[6] as FieldTerm;
  assert.deepEqual(id.items, [{type: 'range', low: 1200, high: 1300}]);
  const last = ast.terms[7] as FieldTerm;
  assert.equal(last.negated, true);
  assert.deepEqual(last.items, [{type: 'status', name: 'success', code: 0}]);
  assert.equal(last.span.position, text.indexOf('!status'));
});

test('the issue example compiles to parameterised SQL for steps, values only in params', () => {
  const text = 'status:failed system:aarch64-linux jobset:nixpkgs/trunk job~^python3 machine:builder1 age>1h id:1200..1300 !status:succeeded';
  const {where, params} = compileFilter(text, 'steps', {now: NOW});
  assert.deepEqual(params, [1, 'aarch64-linux', 'nixpkgs', 'trunk', '^python3', 'builder1', NOW - 3600, 1200, 1300, 0]);
  for (const value of ['aarch64', 'nixpkgs', 'python3', 'builder1', '1200']) assert.ok(!where.includes(value), `${value} leaked into SQL`);
  assert.match(where, /s\.status = \$1 AND s\.system = \$2 AND \(j\.project = \$3 AND j\.name = \$4\) AND b\.job ~ \$5/);
  assert.match(where, /s\.starttime < \$7 AND s\.build BETWEEN \$8 AND \$9 AND \(s\.status = \$10\) IS NOT TRUE$/);
});

test('empty and blank filters give no condition', () => {
  assert.deepEqual(compileFilter('', 'builds'), {where: '', params: []});
  assert.deepEqual(compileFilter('   \t ', 'steps'), {where: '', params: []});
  assert.deepEqual(parseFilter('').terms, []);
});

test('paramOffset numbers parameters after the surrounding query', () => {
  const {where, params} = compileFilter('system:x86_64-linux id>5', 'builds', {paramOffset: 3});
  assert.equal(where, 'b.system = $4 AND b.id > $5');
  assert.deepEqual(params, ['x86_64-linux', 5]);
});

test('build status names map to finished + buildstatus; queued/running/finished are states', () => {
  const c = (f: string) => compileFilter(f, 'builds', {now: NOW});
  assert.deepEqual(c('status:success'), {where: '(b.finished = 1 AND b.buildstatus = $1)', params: [0]});
  assert.deepEqual(c('status:succeeded'), c('status:success'));
  assert.deepEqual(c('status:queued'), {where: 'b.finished = 0', params: []});
  assert.match(c('status:running').where, /b\.finished = 0 AND EXISTS \(SELECT 1 FROM BuildSteps rs WHERE rs\.build = b\.id AND rs\.busy != 0\)/);
  assert.deepEqual(c('status:finished'), {where: 'b.finished = 1', params: []});
  assert.deepEqual(c('status:7').params, [7]);
  assert.deepEqual(c('status:failed,aborted'), {where: '((b.finished = 1 AND b.buildstatus = $1) OR (b.finished = 1 AND b.buildstatus = $2))', params: [1, 3]});
  assert.match(c('status:cachedfailure').where, /iscachedbuild = 1 AND b\.buildstatus IN \(1, 2\)/);
});

test('step status and phases', () => {
  const c = (f: string) => compileFilter(f, 'steps', {now: NOW});
  assert.deepEqual(c('status:running'), {where: 's.busy != 0', params: []});
  assert.deepEqual(c('status:finished'), {where: 's.busy = 0', params: []});
  assert.deepEqual(c('status:cachedfailure'), {where: 's.status = $1', params: [8]});
  assert.deepEqual(c('phase:connecting,sending'), {where: '(s.busy = $1 OR s.busy = $2)', params: [10, 20]});
  assert.deepEqual(c('phase:waiting').params, [35]);
  assert.deepEqual(c('phase:postprocessing').params, [50]);
});

test('negation and != keep NULL rows via IS NOT TRUE; double negation cancels', () => {
  assert.equal(compileFilter('!system:x', 'builds').where, '(b.system = $1) IS NOT TRUE');
  assert.equal(compileFilter('system!=x', 'builds').where, '(b.system = $1) IS NOT TRUE');
  assert.equal(compileFilter('!system!=x', 'builds').where, 'b.system = $1');
});

test('globs become LIKE patterns with % and _ escaped; quoted values are literal', () => {
  assert.equal(globToLike('a_b%c*d?e\\f'), 'a\\_b\\%c%d_e\\\\f');
  assert.deepEqual(compileFilter('job:python3*', 'builds'), {where: 'b.job LIKE $1', params: ['python3%']});
  assert.deepEqual(compileFilter('job:foo_bar', 'builds'), {where: 'b.job = $1', params: ['foo_bar']});
  assert.deepEqual(compileFilter('job:f?o_*', 'builds'), {where: 'b.job LIKE $1', params: ['f_o\\_%']});
  assert.deepEqual(compileFilter('job:"a*b"', 'builds'), {where: 'b.job = $1', params: ['a*b']});
  assert.deepEqual(compileFilter('job="a*"', 'builds'), {where: 'b.job = $1', params: ['a*']});
  assert.deepEqual(compileFilter('job:"with space","q\\"uote"', 'builds').params, ['with space', 'q"uote']);
  assert.deepEqual(compileFilter('drv:gcc-1?', 'builds'), {where: 'b.drvpath LIKE $1', params: ['%gcc-1_%']});
  assert.deepEqual(compileFilter('drv:5%', 'steps'), {where: 's.drvpath LIKE $1', params: ['%5\\%%']});
});

test('jobset accepts project:jobset, project/jobset and jobset, with globs', () => {
  const a = compileFilter('jobset:nixpkgs:trunk', 'builds');
  const b = compileFilter('jobset:nixpkgs/trunk', 'builds');
  assert.deepEqual(a, b);
  assert.deepEqual(a, {where: '(j.project = $1 AND j.name = $2)', params: ['nixpkgs', 'trunk']});
  assert.deepEqual(compileFilter('jobset:trunk', 'evals'), {where: 'j.name = $1', params: ['trunk']});
  assert.deepEqual(compileFilter('jobset:nix*:staging-*', 'builds').params, ['nix%', 'staging-%']);
  assert.equal(compileFilter('jobset~^nixpkgs:', 'builds').where, "(j.project || ':' || j.name) ~ $1");
});

test('age and duration compare against now; ranges work', () => {
  assert.deepEqual(compileFilter('age>2h', 'builds', {now: NOW}), {where: 'b.timestamp < $1', params: [NOW - 7200]});
  assert.deepEqual(compileFilter('age<=30s', 'steps', {now: NOW}), {where: 's.starttime >= $1', params: [NOW - 30]});
  assert.deepEqual(compileFilter('age:1h..1d', 'evals', {now: NOW}), {where: 'e.timestamp BETWEEN $1 AND $2', params: [NOW - 86400, NOW - 3600]});
  assert.deepEqual(compileFilter('duration>=1h30m', 'builds'), {
    where: '(CASE WHEN b.finished = 1 THEN b.stoptime - b.starttime END) >= $1',
    params: [5400],
  });
  const steps = compileFilter('duration>10m', 'steps', {now: NOW});
  assert.match(steps.where, /CASE WHEN s\.busy != 0 THEN \$1::integer ELSE s\.stoptime END\) - s\.starttime\) > \$2/);
  assert.deepEqual(steps.params, [NOW, 600]);
  assert.equal(parseDuration('1w2d3h4m5s'), 604800 + 172800 + 10800 + 240 + 5);
  assert.equal(parseDuration('90'), 90);
  assert.equal(parseDuration('1x'), null);
});

test('id lists, open ranges and comparisons', () => {
  assert.deepEqual(compileFilter('id:123,456', 'builds'), {where: '(b.id = $1 OR b.id = $2)', params: [123, 456]});
  assert.deepEqual(compileFilter('id:1200..', 'steps'), {where: 's.build >= $1', params: [1200]});
  assert.deepEqual(compileFilter('id:..99', 'evals'), {where: 'e.id <= $1', params: [99]});
  assert.deepEqual(compileFilter('id>330000000', 'builds'), {where: 'b.id > $1', params: [330000000]});
});

test('eval membership goes through JobsetEvalMembers', () => {
  assert.deepEqual(compileFilter('eval:42', 'builds'), {
    where: 'EXISTS (SELECT 1 FROM JobsetEvalMembers em WHERE em.build = b.id AND em.eval = $1)',
    params: [42],
  });
  assert.equal(compileFilter('eval:42', 'evals').where, 'e.id = $1');
});

test('bumped, cached, machine on builds', () => {
  assert.equal(compileFilter('bumped:yes', 'builds').where, 'b.globalpriority > 0');
  assert.equal(compileFilter('bumped:no', 'builds').where, 'b.globalpriority <= 0');
  assert.equal(compileFilter('cached:true', 'builds').where, 'b.iscachedbuild = 1');
  assert.match(compileFilter('machine:builder1', 'builds').where, /^EXISTS \(SELECT 1 FROM BuildSteps ms WHERE ms\.build = b\.id AND \(ms\.machine = \$1 OR substring/);
});

test('free text: word, quoted, regex, case-insensitive regex', () => {
  const word = compileFilter('numpy', 'builds');
  assert.match(word.where, /^\(b\.job ILIKE \$1 OR regexp_replace\(b\.drvpath, .*\) ILIKE \$1\)$/);
  assert.deepEqual(word.params, ['%numpy%']);
  assert.deepEqual(compileFilter('"a b_c"', 'steps').params, ['%a b\\_c%']);
  const re = compileFilter('/gcc-1[34]/', 'steps');
  assert.match(re.where, /^\(b\.job ~ \$1 OR regexp_replace\(s\.drvpath, .*\) ~ \$1\)$/);
  assert.deepEqual(re.params, ['gcc-1[34]']);
  assert.match(compileFilter('/GCC/i', 'builds').where, /~\* \$1/);
  const slash = parseFilter('/a\\/b/').terms[0] as TextTerm;
  assert.equal(slash.value, 'a/b');
});

test('regex \\b becomes \\y for PostgreSQL; lookahead and lookbehind are accepted', () => {
  assert.deepEqual(compileFilter('job~\\bfoo\\B', 'builds').params, ['\\yfoo\\Y']);
  assert.deepEqual(compileFilter('job~[\\b]', 'builds').params, ['[\\b]']);
  assert.deepEqual(compileFilter('job~(?<=a)b(?=c)', 'builds').params, ['(?<=a)b(?=c)']);
  assert.deepEqual(compileFilter('job~a{1,3},b', 'builds').params, ['a{1,3},b'], '"~" takes the whole word, commas included');
});

test('field names and keywords are case-insensitive', () => {
  assert.deepEqual(compileFilter('STATUS:Failed', 'builds'), compileFilter('status:failed', 'builds'));
});

test('machine predicate: system, feature, machine (name, URI, host), state, text, negation', () => {
  const machines: MachineFilterRecord[] = [
    {name: 'builder1', uri: 'ssh://root@builder1', systems: ['x86_64-linux', 'i686-linux'], supportedFeatures: ['kvm', 'big-parallel'], state: 'busy'},
    {name: 'mac1', uri: 'ssh-ng://admin@mac1.example.org:2222', systems: ['aarch64-darwin'], supportedFeatures: [], state: 'idle'},
    {name: 'arm1', systems: ['aarch64-linux'], mandatoryFeatures: ['benchmark'], state: 'backoff'},
  ];
  const names = (f: string) => machines.filter(compileMachineFilter(f)).map((m) => m.name);
  assert.deepEqual(names('system:x86_64-linux'), ['builder1']);
  assert.deepEqual(names('system:aarch64-*'), ['mac1', 'arm1']);
  assert.deepEqual(names('feature:kvm'), ['builder1']);
  assert.deepEqual(names('feature:benchmark'), ['arm1']);
  assert.deepEqual(names('machine:builder1'), ['builder1']);
  assert.deepEqual(names('machine:mac1.example.org'), ['mac1']);
  assert.deepEqual(names('state:idle,backoff'), ['mac1', 'arm1']);
  assert.deepEqual(names('!state:busy'), ['mac1', 'arm1']);
  assert.deepEqual(names('state!=busy system~darwin$'), ['mac1']);
  assert.deepEqual(names('ARM'), ['arm1']);
  assert.deepEqual(names('/^b/'), ['builder1']);
  assert.deepEqual(names(''), ['builder1', 'mac1', 'arm1']);
  const e = catchFilterError(() => compileMachineFilter('status:failed'));
  assert.equal(e.position, 0);
  assert.match(e.message, /field "status" does not apply to machines at column 1/);
});

test('fields that do not apply to the target name the field and its column', () => {
  const cases: [string, 'builds' | 'steps' | 'evals', number, RegExp][] = [
    ['phase:building', 'builds', 1, /field "phase" does not apply to builds at column 1/],
    ['system:x feature:kvm', 'steps', 10, /field "feature" does not apply to steps at column 10 \(required features are not stored/],
    ['state:idle', 'builds', 1, /field "state" does not apply to builds/],
    ['job:x', 'evals', 1, /field "job" does not apply to evals/],
    ['bumped:yes', 'steps', 1, /field "bumped" does not apply to steps/],
    ['id:1 hello', 'evals', 6, /free text "hello" does not apply to evals at column 6/],
    ['status:failed,queued', 'steps', 15, /status "queued" does not apply to steps at column 15/],
  ];
  for (const [text, target, column, message] of cases) {
    const e = catchFilterError(() => compileFilter(text, target));
    assert.equal(e.column, column, text);
    assert.match(e.message, message, text);
  }
});

// [expression, 1-based column of the offending token, the token, message pattern]
const MALFORMED: [string, number, string, RegExp][] = [
  ['stauts:failed', 1, 'stauts', /unknown field "stauts" at column 1 \(did you mean "status"\?\)/],
  ['age>1x', 5, '1x', /bad duration "1x" at column 5/],
  ['status:failed job:"python', 19, '"python', /unterminated quote at column 19/],
  ['"never closed', 1, '"never closed', /unterminated quote at column 1/],
  ['/abc', 1, '/abc', /unterminated regular expression at column 1/],
  ['/a(/', 2, 'a(', /invalid regular expression "a\(" at column 2/],
  ['job~(', 5, '(', /invalid regular expression "\(" at column 5/],
  ['job~(?<name>x)', 5, '(?<', /unsupported regular expression construct "\(\?<" at column 5 \(named groups/],
  ['job~a\\p{L}', 6, '\\p{', /unsupported regular expression construct "\\p\{" at column 6/],
  ['job~(a)\\k<a>', 8, '\\k<', /unsupported regular expression construct "\\k</],
  ['job~x[^]', 6, '[^]', /unsupported regular expression construct "\[\^\]" at column 6/],
  ['//', 1, '//', /empty regular expression "\/\/" at column 1/],
  ['/x/g', 4, 'g', /unknown regular expression flag "g" at column 4/],
  ['status:', 1, 'status:', /missing value after "status:" at column 1/],
  ['system:x status:failed,', 23, ',', /missing value after "," at column 23/],
  ['job:a,,b', 6, ',', /missing value after "," at column 6/],
  ['status:faild', 8, 'faild', /unknown status "faild" at column 8 \(did you mean "failed"\?\)/],
  ['phase:bilding', 7, 'bilding', /unknown phase "bilding" at column 7 \(did you mean "building"\?\)/],
  ['state:sleepy', 7, 'sleepy', /unknown machine state "sleepy" at column 7/],
  ['bumped:maybe', 8, 'maybe', /bad value "maybe" for field "bumped" at column 8/],
  ['id:abc', 4, 'abc', /bad number "abc" for field "id" at column 4/],
  ['id:12x..20', 4, '12x', /bad number "12x" for field "id" at column 4/],
  ['id:5..2', 4, '5..2', /empty range "5..2" for field "id" at column 4/],
  ['id:1..2..3', 4, '1..2..3', /bad range "1..2..3" for field "id" at column 4/],
  ['id:..', 4, '..', /bad range "\.\." for field "id"/],
  ['id:99999999999', 4, '99999999999', /number "99999999999" out of range for field "id" at column 4/],
  ['eval:x1', 6, 'x1', /bad number "x1" for field "eval" at column 6/],
  ['age:1h', 5, '1h', /field "age" needs a comparison or a range, got "1h" at column 5/],
  ['age>-1h', 5, '-1h', /bad duration "-1h" at column 5/],
  ['duration<', 1, 'duration<', /missing value after "duration<" at column 1/],
  ['age>1h,2h', 8, '2h', /unexpected list item "2h" at column 8 \(operator ">" takes a single value\)/],
  ['system>x86', 7, '>', /operator ">" does not apply to field "system" at column 7/],
  ['status~fail', 7, '~', /operator "~" does not apply to field "status"/],
  ['age!=1h', 4, '!=', /operator "!=" does not apply to field "age"/],
  ['!', 1, '!', /"!" must be followed by a term at column 1/],
  ['status:failed ! job:x', 15, '!', /"!" must be followed by a term at column 15/],
  ['!!status:failed', 2, '!', /unexpected "!" at column 2/],
  ['status==failed', 8, '=', /unexpected "=" after operator "=" at column 8/],
  [':failed', 1, ':', /expected a field name before ":" at column 1/],
  ['>=3', 1, '>=', /expected a field name before ">=" at column 1/],
  ['job:foo"bar"', 8, '"', /unexpected quote inside a value at column 8/],
  ['job:"foo"bar', 10, 'b', /unexpected "b" after closing quote at column 10/],
  ['foo"bar', 4, '"', /unexpected quote inside a word at column 4/],
  ['""', 1, '""', /empty quoted text "" at column 1/],
  ['jobset:a:b:c', 8, 'a:b:c', /bad jobset "a:b:c" at column 8/],
  ['jobset:a:', 8, 'a:', /bad jobset "a:"/],
  ['jobset:a/b:c', 8, 'a/b:c', /bad jobset "a\/b:c"/],
  ['foo=bar', 1, 'foo', /unknown field "foo" at column 1/],
  ['system:x sytem:y', 10, 'sytem', /unknown field "sytem" at column 10 \(did you mean "system"\?\)/],
  ['phase:0', 7, '0', /phase "0" means not running at column 7/],
];

test(`${MALFORMED.length} malformed expressions report the offending token and its column`, () => {
  assert.ok(MALFORMED.length >= 30);
  for (const [text, column, token, message] of MALFORMED) {
    const e = catchFilterError(() => compileFilter(text, 'builds', {now: NOW}));
    assert.equal(e.column, column, `column for ${JSON.stringify(text)}: ${e.message}`);
    assert.equal(e.position, column - 1);
    assert.equal(e.token, token, `token for ${JSON.stringify(text)}`);
    assert.match(e.message, message, `message for ${JSON.stringify(text)}`);
    // Every message quotes the token, except the unterminated ones, which run to the end of the text.
    // A stray quote character is named as "quote".
    const named = token === '"' ? /\bquote\b/.test(e.message) : e.message.includes(token.includes('"') ? token : `"${token}"`);
    if (!/^unterminated/.test(e.message)) assert.ok(named, `message names the token: ${e.message}`);
    assert.ok(e.length >= 1);
  }
});

test('formatFilterError prints the expression with carets under the token', () => {
  const text = 'status:failed stauts:x age>1h';
  const e = catchFilterError(() => parseFilter(text));
  assert.equal(
    formatFilterError(text, e),
    [
      'filter error: unknown field "stauts" at column 15 (did you mean "status"?)',
      '  status:failed stauts:x age>1h',
      '                ^^^^^^',
    ].join('\n'),
  );
  const text2 = 'age>1x';
  assert.equal(formatFilterError(text2, catchFilterError(() => parseFilter(text2))).split('\n')[2], '      ^^');
  const text3 = 'job:"abc';
  assert.equal(formatFilterError(text3, catchFilterError(() => parseFilter(text3))).split('\n')[2], '      ^');
  const text4 = 'status:';
  assert.equal(formatFilterError(text4, catchFilterError(() => parseFilter(text4))).split('\n')[2], '  ^^^^^^^');
  const tabbed = 'a\tstauts:x';
  assert.equal(formatFilterError(tabbed, catchFilterError(() => parseFilter(tabbed))).split('\n').slice(1).join('\n'), '  a stauts:x\n    ^^^^^^');
});
