import { DynamicModule, Module } from '@nestjs/common';
import { provideAs, Replacement } from '../common/replacement';
import { Placement, PLACEMENT } from './placement';
import { RendezvousPlacement } from './rendezvous-placement.service';

/** PLACEMENT for every module: rendezvous hashing, or a team's replacement (which may inject RendezvousPlacement). */
@Module({})
export class HashingModule {
  static forRoot(placement?: Replacement<Placement>): DynamicModule {
    return {
      module: HashingModule,
      global: true,
      providers: [RendezvousPlacement, provideAs(PLACEMENT, placement, RendezvousPlacement)],
      exports: [PLACEMENT, RendezvousPlacement],
    };
  }
}
