import { Column, Entity, PrimaryColumn } from 'typeorm';

/** One planned move of a dry-run rebalance, in plan order. */
@Entity({ name: 'job_plan' })
export class JobPlanEntity {
  @PrimaryColumn({ type: 'text', name: 'job_id' })
  jobId: string;

  @PrimaryColumn({ type: 'integer' })
  seq: number;

  @Column({ type: 'text' })
  entry: string;
}
