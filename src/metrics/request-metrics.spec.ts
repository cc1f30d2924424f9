import { Counter, Histogram, Registry } from 'prom-client';
import { RequestMetrics } from './request-metrics';

/** What prom-client's own Counter and Histogram report for the same requests: the text a scraper saw before. */
function referenceRegistry(requests: [string, number, number][]): Registry {
  const registry = new Registry();
  const counter = new Counter({
    name: 'mkv_http_requests_total',
    help: 'HTTP requests answered, by method and status',
    labelNames: ['method', 'status'],
    registers: [registry],
  });
  const histogram = new Histogram({
    name: 'mkv_http_request_duration_seconds',
    help: 'Time from request to the end of the answer, by method',
    labelNames: ['method'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [registry],
  });
  for (const [method, status, seconds] of requests) {
    counter.inc({ method, status });
    histogram.observe({ method }, seconds);
  }
  return registry;
}

describe('RequestMetrics', () => {
  const requests: [string, number, number][] = [
    ['GET', 302, 0.0004],
    ['GET', 302, 0.0005], // on a bucket's bound: counted in that bucket (le)
    ['GET', 404, 0.003],
    ['PUT', 201, 0.02],
    ['PUT', 201, 75], // above the last bound: only +Inf
    ['PUT', 502, 1.5],
    ['DELETE', 204, 0.0011],
  ];

  it("reports the same samples as prom-client's Counter and Histogram did for the same requests", async () => {
    const registry = new Registry();
    const metrics = new RequestMetrics(registry);
    for (const [method, status, seconds] of requests) metrics.record(method, status, seconds);

    expect(await registry.metrics()).toBe(await referenceRegistry(requests).metrics());
  });

  it('reports nothing before the first request, and starts again after a reset', async () => {
    const registry = new Registry();
    const metrics = new RequestMetrics(registry);
    expect(await registry.metrics()).toBe(await referenceRegistry([]).metrics());
    metrics.record('GET', 302, 0.001);
    registry.resetMetrics();
    metrics.record('HEAD', 200, 0.001);
    expect(await registry.metrics()).toBe(await referenceRegistry([['HEAD', 200, 0.001]]).metrics());
  });
});
