import { Column, Entity, PrimaryColumn } from 'typeorm';

@Entity({ name: 'write_intents' })
export class WriteIntentEntity {
  @PrimaryColumn({ type: 'text' })
  id: string;

  @Column({ type: 'text' })
  key: string;

  @Column({ type: 'text', name: 'temp_path' })
  tempPath: string;

  @Column({ type: 'text' })
  volumes: string;

  @Column({ type: 'integer', name: 'created_at' })
  createdAt: number;
}
