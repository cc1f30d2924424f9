import { Controller, Get, Head, HttpException, Inject, Res } from '@nestjs/common';
import { HealthCheck, HealthCheckResult, HealthCheckService, HealthIndicatorService } from '@nestjs/terminus';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { MkvConfig } from '../config/mkv-config';
import { KEY_INDEX, KeyIndex } from '../index/key-index';
import { VolumeHealth } from './volume-health.service';

/** Liveness, readiness and the volumes' state, for load balancers and operators. */
@ApiTags('health')
@Controller('_admin')
export class HealthController {
  constructor(
    private readonly config: MkvConfig,
    private readonly checks: HealthCheckService,
    private readonly indicators: HealthIndicatorService,
    private readonly volumes: VolumeHealth,
    @Inject(KEY_INDEX) private readonly index: KeyIndex,
  ) {}

  /** Liveness: the process answers. */
  @Get('health')
  @ApiOperation({ summary: 'Liveness: 200 while the process answers' })
  @HealthCheck()
  live() {
    return this.checks.check([]);
  }

  /** Readiness: the index answers and can be written, and at least R volumes are up. */
  @Get('ready')
  @ApiOperation({ summary: 'Readiness: 200 when the index answers and can be written and at least R volumes are up, else 503' })
  @HealthCheck()
  async ready(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    try {
      return await this.checks.check([() => this.indexCheck(), () => this.volumesCheck()]);
    } catch (error) {
      // Terminus reports "not ready" by throwing its JSON result; that body is
      // the convention for readiness probes, so it is answered here rather
      // than by the plain-text error filter.
      if (!(error instanceof HttpException)) throw error;
      reply.status(error.getStatus());
      return error.getResponse() as HealthCheckResult;
    }
  }

  // HEAD answers as its GET does, without the body (exposeHeadRoutes is off
  // for the whole server: the key API's HEAD has its own handler).
  @Head('health')
  @ApiOperation({ summary: 'Liveness, as GET without the body' })
  @HealthCheck()
  liveHead() {
    return this.live();
  }

  @Head('ready')
  @ApiOperation({ summary: 'Readiness, as GET without the body' })
  @HealthCheck()
  readyHead(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    return this.ready(reply);
  }

  /** Each volume's probe state, and what the index says it holds. */
  @Get('volumes')
  @ApiOperation({ summary: 'Each volume: probe state, last check, latency, failures, and the keys and bytes it holds' })
  async list() {
    const usage = await this.index.usage();
    return {
      volumes: this.volumes.statuses().map((status) => {
        const held = usage.volumes.find((v) => v.volume === status.url);
        return { ...status, keys: held?.keys ?? 0, bytes: held?.bytes ?? 0 };
      }),
    };
  }

  private async indexCheck() {
    const indicator = this.indicators.check('index');
    try {
      await this.index.ping();
      return indicator.up();
    } catch (error) {
      return indicator.down({ message: (error as Error).message });
    }
  }

  private volumesCheck() {
    const indicator = this.indicators.check('volumes');
    const up = this.volumes.upCount();
    const details = { up, needed: this.config.replicas, total: this.config.volumes.length };
    return up >= this.config.replicas ? indicator.up(details) : indicator.down(details);
  }
}
