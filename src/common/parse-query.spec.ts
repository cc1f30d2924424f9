import 'reflect-metadata'; // as in main.ts: class-transformer's decorators may read design types
import { RebalanceQueryDto, RebuildQueryDto } from '../admin/admin-query.dto';
import { ListQueryDto } from '../keys/list-query.dto';
import { MkvError } from './mkv-error';
import { parseQuery } from './parse-query';

/** The query object as Fastify's parser hands it to a controller: null prototype, every name an own key, a repeated name an array. */
function query(text: string): Record<string, unknown> {
  const parsed: Record<string, unknown> = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    const previous = parsed[name];
    parsed[name] = previous === undefined ? value : ([] as unknown[]).concat(previous, value);
  }
  return parsed;
}

function reason(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    expect(error).toBeInstanceOf(MkvError);
    return (error as MkvError).message;
  }
  throw new Error('expected the query to be refused');
}

describe(parseQuery.name, () => {
  describe('whole-number parameters take decimal digits only', () => {
    it.each(['1', '10', '0010', '10000'])('limit=%s is a number', (limit) => {
      expect(parseQuery(ListQueryDto, query(`limit=${limit}`)).limit).toBe(Number(limit));
    });

    // Number() reads each of these as a number: a typo or a probe must not become a different limit.
    it.each(['1e3', '0x10', '%208', '8%20', '8.0', '-1', '+5', '', '0b11', 'Infinity', '1_000'])('limit=%s is refused', (limit) => {
      expect(reason(() => parseQuery(ListQueryDto, query(`limit=${limit}`)))).toBe('limit must be a whole number');
    });

    it('a repeated limit is refused', () => {
      expect(reason(() => parseQuery(ListQueryDto, query('limit=1&limit=2')))).toBe('limit must be a whole number');
    });

    it('keeps the range checks', () => {
      expect(reason(() => parseQuery(ListQueryDto, query('limit=0')))).toBe('limit must be at least 1');
      expect(reason(() => parseQuery(ListQueryDto, query('limit=10001')))).toBe('limit must be at most 10000');
    });

    it.each(['1e1', '0x10', '%208'])('concurrency=%s is refused the same way', (concurrency) => {
      expect(reason(() => parseQuery(RebalanceQueryDto, query(`concurrency=${concurrency}`), { strict: true }))).toBe(
        'concurrency must be a whole number',
      );
    });

    it('concurrency=8 is 8', () => {
      expect(parseQuery(RebalanceQueryDto, query('concurrency=8&dryRun=true'), { strict: true })).toEqual({ concurrency: 8, dryRun: true });
    });
  });

  describe('strict mode refuses every parameter the DTO does not know', () => {
    // class-validator's whitelist never saw these: a misspelt or hostile name started a real job.
    it.each(['__proto__', 'constructor', 'hasOwnProperty', 'dryrun', 'toString'])('%s=x is an unknown parameter', (name) => {
      expect(reason(() => parseQuery(RebalanceQueryDto, query(`${name}=x`), { strict: true }))).toBe(`unknown parameter ${name}`);
    });

    it('names the unknown parameter even beside known ones', () => {
      expect(reason(() => parseQuery(RebalanceQueryDto, query('dryRun=true&__proto__=x'), { strict: true }))).toBe('unknown parameter __proto__');
    });

    it('a DTO without parameters refuses any', () => {
      expect(reason(() => parseQuery(RebuildQueryDto, query('constructor=x'), { strict: true }))).toBe('unknown parameter constructor');
      expect(parseQuery(RebuildQueryDto, query(''), { strict: true })).toBeInstanceOf(RebuildQueryDto);
    });

    it('without strict, unknown parameters are ignored', () => {
      expect(parseQuery(ListQueryDto, query('prefix=a&other=1')).prefix).toBe('a');
    });
  });
});
