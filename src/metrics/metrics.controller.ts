import { Controller, Get, Res } from '@nestjs/common';
import type { FastifyReply } from 'fastify';
import { MkvMetrics } from './mkv-metrics.service';

@Controller('_admin')
export class MetricsController {
  constructor(private readonly metrics: MkvMetrics) {}

  /** Prometheus text format. */
  @Get('metrics')
  async scrape(@Res({ passthrough: true }) reply: FastifyReply): Promise<string> {
    const { contentType, body } = await this.metrics.render();
    reply.header('content-type', contentType);
    return body;
  }
}
