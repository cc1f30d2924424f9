import { createServer, IncomingMessage, Server } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { HttpVolumeClient } from './http-volume.client';
import { VolumeError } from './volume-client';
import { rejection } from '../../test/support/rejection';

const volumeError = async (promise: Promise<unknown>) => (await rejection(promise)) as unknown as VolumeError;

/** A stand-in volume that answers each request with the status `answer` picks, and records what it got. */
describe(HttpVolumeClient.name, () => {
  let server: Server;
  let volume: string;
  let client: HttpVolumeClient;
  let seen: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
  let answer: (method: string) => number;

  beforeEach(async () => {
    seen = [];
    answer = (method) => (method === 'PUT' ? 201 : 204);
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        seen.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() });
        res.statusCode = answer(req.method!);
        res.end(res.statusCode === 404 ? 'not found' : undefined);
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    volume = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    client = new HttpVolumeClient();
  });

  afterEach(async () => {
    await client.onApplicationShutdown();
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  });

  it('PUTs a Buffer with its length, at the path of the URL', async () => {
    await client.put(`${volume}/.mkv-tmp/a%20b`, Buffer.from('hello'), { length: 5 });
    expect(seen).toMatchObject([{ method: 'PUT', url: '/.mkv-tmp/a%20b', body: 'hello', headers: { 'content-length': '5' } }]);
  });

  it('MOVEs with the destination as a path on the same volume', async () => {
    await client.move(`${volume}/.mkv-tmp/x`, `${volume}/sv0A/a/b`);
    expect(seen).toMatchObject([{ method: 'MOVE', url: '/.mkv-tmp/x', headers: { destination: '/sv0A/a/b', overwrite: 'T' } }]);
  });

  it('tells a DELETE that removed a blob from one that found none, reusing the connection', async () => {
    await expect(client.delete(`${volume}/k`)).resolves.toBe(true);
    answer = () => 404;
    await expect(client.delete(`${volume}/k`)).resolves.toBe(false);
    expect(seen.map((r) => r.method)).toEqual(['DELETE', 'DELETE']);
  });

  it('rejects an unexpected status with the status', async () => {
    answer = () => 507;
    const error = await volumeError(client.put(`${volume}/k`, Buffer.from('x')));
    expect(error).toBeInstanceOf(VolumeError);
    expect([error.status, error.message]).toEqual([507, `PUT ${volume}/k: volume answered 507`]);
  });

  it('rejects a volume it cannot reach as unreachable', async () => {
    await new Promise((resolve) => server.close(resolve));
    const error = await volumeError(client.move(`${volume}/a`, `${volume}/b`));
    expect(error).toBeInstanceOf(VolumeError);
    expect(error.unreachable).toBe(true);
  });

  it('tells a probe that got no answer in time (timedOut: slow) from one refused (dead)', async () => {
    const sockets: Socket[] = [];
    const silent = createTcpServer((socket) => sockets.push(socket)); // accepts, never answers
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const silentVolume = `http://127.0.0.1:${(silent.address() as AddressInfo).port}`;
    try {
      const slow = await volumeError(client.probe(silentVolume, 100));
      expect([slow.unreachable, slow.timedOut, slow.message]).toEqual([true, true, `HEAD ${silentVolume}/.mkv-probe: no answer within 100 ms`]);
    } finally {
      for (const socket of sockets) socket.destroy();
      await new Promise((resolve) => silent.close(resolve));
    }
    const dead = await volumeError(client.probe(silentVolume, 100));
    expect([dead.unreachable, dead.timedOut]).toEqual([true, false]);
    expect(dead.message).toMatch(/ECONNREFUSED/);
    answer = () => 404; // nginx's answer for the probe's path, which never exists
    await expect(client.probe(volume, 1000)).resolves.toBeUndefined();
  });

  it('never sends a request whose signal was aborted before it had a connection', async () => {
    const abort = new AbortController();
    const put = client.put(`${volume}/k`, Buffer.from('x'), { signal: abort.signal });
    abort.abort(new Error('another volume failed'));
    expect((await volumeError(put)).message).toBe(`PUT ${volume}/k: another volume failed`);
    const already = await volumeError(client.put(`${volume}/k`, Buffer.from('x'), { signal: abort.signal }));
    expect(already.unreachable).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(seen).toEqual([]);
  });
});
