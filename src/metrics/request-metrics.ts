import type { Metric, Registry } from 'prom-client';

/** Upper bounds of the request duration histogram, in seconds. */
const DURATION_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** One method's counts: answers by status, and durations by bucket (the last slot is +Inf). */
interface MethodCounts {
  byStatus: Map<number, number>;
  buckets: Float64Array;
  sum: number;
  count: number;
}

/**
 * The per-request metrics, `mkv_http_requests_total{method,status}` and
 * `mkv_http_request_duration_seconds{method}`, kept in plain numbers and read
 * into the registry only when it is scraped. prom-client's own Counter and
 * Histogram hash their label set on every observation, which cost a GET about
 * a tenth of its server CPU; here a request costs two map lookups and a few
 * additions. The registry formats them like its own metrics (same names,
 * types and samples as a prom-client Counter and Histogram).
 */
export class RequestMetrics {
  private readonly byMethod = new Map<string, MethodCounts>();

  constructor(registry: Registry) {
    registry.registerMetric(this.metric('mkv_http_requests_total', 'HTTP requests answered, by method and status', 'counter', () => this.requestSamples()));
    registry.registerMetric(this.metric('mkv_http_request_duration_seconds', 'Time from request to the end of the answer, by method', 'histogram', () => this.durationSamples()));
  }

  record(method: string, status: number, seconds: number): void {
    let counts = this.byMethod.get(method);
    if (counts === undefined) {
      counts = { byStatus: new Map(), buckets: new Float64Array(DURATION_BUCKETS.length + 1), sum: 0, count: 0 };
      this.byMethod.set(method, counts);
    }
    counts.byStatus.set(status, (counts.byStatus.get(status) ?? 0) + 1);
    let bucket = 0;
    while (bucket < DURATION_BUCKETS.length && seconds > DURATION_BUCKETS[bucket]) bucket++;
    counts.buckets[bucket]++;
    counts.sum += seconds;
    counts.count++;
  }

  private requestSamples(): Sample[] {
    const samples: Sample[] = [];
    for (const [method, { byStatus }] of this.byMethod) {
      for (const [status, value] of byStatus) samples.push({ labels: { method, status }, value });
    }
    return samples;
  }

  /** Cumulative buckets, then sum and count, per method: what prom-client's Histogram reports. */
  private durationSamples(): Sample[] {
    const name = 'mkv_http_request_duration_seconds';
    const samples: Sample[] = [];
    for (const [method, { buckets, sum, count }] of this.byMethod) {
      let cumulative = 0;
      buckets.forEach((inBucket, i) => {
        cumulative += inBucket;
        samples.push({ metricName: `${name}_bucket`, labels: { le: i < DURATION_BUCKETS.length ? DURATION_BUCKETS[i] : '+Inf', method }, value: cumulative });
      });
      samples.push({ metricName: `${name}_sum`, labels: { method }, value: sum });
      samples.push({ metricName: `${name}_count`, labels: { method }, value: count });
    }
    return samples;
  }

  /**
   * A metric the registry can hold: the registry only calls `get()` (and
   * `reset()` from resetMetrics), so the object stands in for a prom-client
   * metric class; hence the cast.
   */
  private metric(name: string, help: string, type: 'counter' | 'histogram', samples: () => Sample[]): Metric {
    const byMethod = this.byMethod;
    return {
      name,
      help,
      type,
      get: async () => ({ name, help, type, values: samples(), aggregator: 'sum' }),
      reset: () => byMethod.clear(),
    } as unknown as Metric;
  }
}

interface Sample {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}
