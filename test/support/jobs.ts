import { TERMINAL_STATES, type JobView } from '../../src/admin/jobs/job';
import { http } from './http';
import { pollUntil } from './poll-until';

/** The job at `location` (`/_admin/jobs/{id}`) as the admin API shows it now. */
export async function jobAt(serverUrl: string, location: string): Promise<JobView> {
  const res = await http('GET', `${serverUrl}${location}`);
  if (res.status !== 200) throw new Error(`GET ${location} answered ${res.status}: ${res.text}`);
  return JSON.parse(res.text) as JobView;
}

/** Polls the job at `location` until it has ended (succeeded, failed, cancelled or interrupted). */
export function jobFinished(serverUrl: string, location: string, timeoutMs = 30_000): Promise<JobView> {
  return pollUntil(
    async () => {
      const job = await jobAt(serverUrl, location);
      return TERMINAL_STATES.includes(job.state) ? job : undefined;
    },
    { timeoutMs, what: `job ${location} to finish` },
  );
}
