import { Column, Entity, PrimaryColumn } from 'typeorm';

/** The `keys` table; the schema itself is owned by the migrations. */
@Entity({ name: 'keys' })
export class KeyEntity {
  @PrimaryColumn({ type: 'text' })
  key: string;

  /** Comma-separated volume URLs (a normalized URL never holds a comma). */
  @Column({ type: 'text' })
  volumes: string;

  @Column({ type: 'integer' })
  size: number;

  @Column({ type: 'text' })
  md5: string;

  @Column({ type: 'text' })
  state: string;

  @Column({ type: 'integer', name: 'created_at' })
  createdAt: number;

  @Column({ type: 'integer', name: 'updated_at' })
  updatedAt: number;
}
