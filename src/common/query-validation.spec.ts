import 'reflect-metadata'; // as in main.ts: class-transformer's decorators may read design types
import { RebalanceQueryDto, RebuildQueryDto } from '../admin/admin-query.dto';
import { ListQueryDto } from '../keys/list-query.dto';
import type { ClassConstructor } from 'class-transformer';
import { MkvError, MkvErrorCode } from './mkv-error';
import { queryPipe, QueryValidationPipe, strictQueryPipe } from './query-validation';

/** The query object as Fastify's parser hands it to a controller: null prototype, every name an own key, a repeated name an array. */
function query(text: string): Record<string, unknown> {
  const parsed: Record<string, unknown> = Object.create(null);
  for (const [name, value] of new URLSearchParams(text)) {
    const previous = parsed[name];
    parsed[name] = previous === undefined ? value : ([] as unknown[]).concat(previous, value);
  }
  return parsed;
}

/** What a handler's `@Query(pipe) query: Dto` receives for this query string. */
function throughPipe<T extends object>(dto: ClassConstructor<T>, parsed: Record<string, unknown>, { strict = false } = {}): Promise<T> {
  const pipe = strict ? strictQueryPipe : queryPipe;
  return pipe.transform(parsed, { type: 'query', metatype: dto, data: undefined }) as Promise<T>;
}

/** The domain error the pipe refuses the query with: its text is the 400's body. */
async function reason(parsing: Promise<unknown>): Promise<string> {
  const error = await parsing.then(
    () => undefined,
    (refusal: unknown) => refusal,
  );
  if (error === undefined) throw new Error('expected the query to be refused');
  expect(error).toBeInstanceOf(MkvError);
  expect((error as MkvError).code).toBe(MkvErrorCode.InvalidRequest);
  return (error as MkvError).message;
}

describe(QueryValidationPipe.name, () => {
  describe('whole-number parameters take decimal digits only', () => {
    it.each(['1', '10', '0010', '10000'])('limit=%s is a number', async (limit) => {
      expect((await throughPipe(ListQueryDto, query(`limit=${limit}`))).limit).toBe(Number(limit));
    });

    // Number() reads each of these as a number: a typo or a probe must not become a different limit.
    it.each(['1e3', '0x10', '%208', '8%20', '8.0', '-1', '+5', '', '0b11', 'Infinity', '1_000'])('limit=%s is refused', async (limit) => {
      expect(await reason(throughPipe(ListQueryDto, query(`limit=${limit}`)))).toBe('limit must be a whole number');
    });

    it('a repeated limit is refused', async () => {
      expect(await reason(throughPipe(ListQueryDto, query('limit=1&limit=2')))).toBe('limit must be a whole number');
    });

    it('keeps the range checks', async () => {
      expect(await reason(throughPipe(ListQueryDto, query('limit=0')))).toBe('limit must be at least 1');
      expect(await reason(throughPipe(ListQueryDto, query('limit=10001')))).toBe('limit must be at most 10000');
    });

    it.each(['1e1', '0x10', '%208'])('concurrency=%s is refused the same way', async (concurrency) => {
      expect(await reason(throughPipe(RebalanceQueryDto, query(`concurrency=${concurrency}`), { strict: true }))).toBe(
        'concurrency must be a whole number',
      );
    });

    it('concurrency=8 is 8', async () => {
      expect(await throughPipe(RebalanceQueryDto, query('concurrency=8&dryRun=true'), { strict: true })).toEqual({ concurrency: 8, dryRun: true });
    });
  });

  describe('strict mode refuses every parameter the DTO does not know', () => {
    // class-validator's whitelist never saw these: a misspelt or hostile name started a real job.
    it.each(['__proto__', 'constructor', 'hasOwnProperty', 'dryrun', 'toString'])('%s=x is an unknown parameter', async (name) => {
      expect(await reason(throughPipe(RebalanceQueryDto, query(`${name}=x`), { strict: true }))).toBe(`unknown parameter ${name}`);
    });

    it('names the unknown parameter even beside known ones', async () => {
      expect(await reason(throughPipe(RebalanceQueryDto, query('dryRun=true&__proto__=x'), { strict: true }))).toBe('unknown parameter __proto__');
    });

    it('a DTO without parameters refuses any', async () => {
      expect(await reason(throughPipe(RebuildQueryDto, query('constructor=x'), { strict: true }))).toBe('unknown parameter constructor');
      expect(await throughPipe(RebuildQueryDto, query(''), { strict: true })).toBeInstanceOf(RebuildQueryDto);
    });

    it('without strict, unknown parameters are ignored', async () => {
      expect((await throughPipe(ListQueryDto, query('prefix=a&other=1'))).prefix).toBe('a');
    });
  });
});
