import { Column, Entity, PrimaryColumn } from 'typeorm';

/** A job as last saved: the whole view as JSON, with the columns listings filter on. */
@Entity({ name: 'jobs' })
export class JobEntity {
  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ type: 'text' })
  kind: string;

  @Column({ type: 'text' })
  state: string;

  @Column({ type: 'text' })
  view: string;

  @Column({ type: 'integer', name: 'created_at' })
  createdAt: number;
}
