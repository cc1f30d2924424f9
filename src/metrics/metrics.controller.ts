import { Controller, Get, Res } from '@nestjs/common';
import { ApiOperation, ApiProduces, ApiTags } from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { MkvMetrics } from './mkv-metrics.service';

@ApiTags('health')
@Controller('_admin')
export class MetricsController {
  constructor(private readonly metrics: MkvMetrics) {}

  @Get('metrics')
  @ApiOperation({ summary: 'Prometheus metrics, text format' })
  @ApiProduces('text/plain')
  async scrape(@Res({ passthrough: true }) reply: FastifyReply): Promise<string> {
    const { contentType, body } = await this.metrics.render();
    reply.header('content-type', contentType);
    return body;
  }
}
