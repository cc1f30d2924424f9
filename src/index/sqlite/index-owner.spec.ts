import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { IndexInUseError } from '../index-in-use.error';
import { IndexOwner } from './index-owner';

/** One owner per index file (two servers on one index corrupted it: each recovered the other's writes in flight). */
describe('IndexOwner', () => {
  let dir: string;
  let db: string;
  const owners: IndexOwner[] = [];
  const claim = (path = db) => {
    const owner = IndexOwner.claim(path);
    owners.push(owner);
    return owner;
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'mkv-owner-'));
    db = join(dir, 'index.db');
  });
  afterEach(() => {
    for (const owner of owners.splice(0)) owner.release();
    rmSync(dir, { recursive: true, force: true });
  });

  it('refuses a second claim on the same index, naming the owner by pid', () => {
    claim();
    expect(readFileSync(`${db}.pid`, 'utf8').trim()).toBe(String(process.pid));
    let refusal: unknown;
    try {
      claim();
    } catch (error) {
      refusal = error;
    }
    expect(refusal).toBeInstanceOf(IndexInUseError);
    expect((refusal as Error).message).toBe(`index ${db} is in use by another mkv (pid ${process.pid})`);
  });

  it('lets the next claim in once released, and removes its pid file', () => {
    const first = claim();
    first.release();
    expect(existsSync(`${db}.pid`)).toBe(false);
    expect(() => claim()).not.toThrow();
  });

  it('a pid file left by a dead owner neither locks the index nor outlives the next claim', () => {
    claim().release();
    writeFileSync(`${db}.pid`, '999999\n');
    claim();
    expect(readFileSync(`${db}.pid`, 'utf8').trim()).toBe(String(process.pid));
  });

  it('claims on different index files are independent', () => {
    claim();
    expect(() => claim(join(dir, 'other.db'))).not.toThrow();
  });

  it('an in-memory index needs no lock', () => {
    claim(':memory:');
    expect(() => claim(':memory:')).not.toThrow();
  });

  it('the refusal carries advice when the caller gives it', () => {
    expect(new IndexInUseError('data/index.db', 1234, 'use POST /_admin/rebuild on the running server instead').message).toBe(
      'index data/index.db is in use by another mkv (pid 1234): use POST /_admin/rebuild on the running server instead',
    );
    expect(new IndexInUseError('data/index.db', undefined).message).toBe('index data/index.db is in use by another mkv');
  });
});
