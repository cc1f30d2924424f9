import { ArgumentsHost, Catch, ExceptionFilter, HttpException, HttpStatus, Logger } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { MkvError, MkvErrorCode } from './mkv-error';

const STATUS_BY_CODE: Record<MkvErrorCode, number> = {
  [MkvErrorCode.InvalidRequest]: HttpStatus.BAD_REQUEST,
  [MkvErrorCode.BodyTimeout]: HttpStatus.REQUEST_TIMEOUT,
  [MkvErrorCode.NotFound]: HttpStatus.NOT_FOUND,
  [MkvErrorCode.MustUnlinkFirst]: HttpStatus.FORBIDDEN,
  [MkvErrorCode.KeyConflict]: HttpStatus.CONFLICT,
  [MkvErrorCode.JobConflict]: HttpStatus.CONFLICT,
  [MkvErrorCode.EmptyValue]: HttpStatus.LENGTH_REQUIRED,
  [MkvErrorCode.NotEnoughVolumes]: HttpStatus.SERVICE_UNAVAILABLE,
  [MkvErrorCode.VolumeDown]: HttpStatus.SERVICE_UNAVAILABLE,
  [MkvErrorCode.NoHealthyVolume]: HttpStatus.SERVICE_UNAVAILABLE,
  [MkvErrorCode.VolumeWriteFailed]: HttpStatus.BAD_GATEWAY,
  [MkvErrorCode.DatabaseError]: HttpStatus.INTERNAL_SERVER_ERROR,
  [MkvErrorCode.CorruptRecord]: HttpStatus.INTERNAL_SERVER_ERROR,
};

/**
 * The single place where errors become HTTP: status from the domain code and a
 * plain-text body (the API's contract, for curl as much as for programs).
 */
@Catch()
export class MkvExceptionFilter implements ExceptionFilter {
  private readonly logger = new Logger('mkv');

  catch(error: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    const reply = http.getResponse<FastifyReply>();
    const { status, message } = this.describe(error, request);

    if (reply.sent || reply.raw.destroyed) return; // the client went away mid-stream: nobody to answer
    // A request body we never read (a PUT refused before or during streaming)
    // would otherwise be drained to the end before the socket is reused.
    if (!request.raw.complete) reply.header('connection', 'close');
    reply.status(status).header('content-type', 'text/plain; charset=utf-8');
    if (request.method === 'HEAD') reply.header('content-length', '0').send();
    else reply.send(message);
  }

  private describe(error: unknown, request: FastifyRequest): { status: number; message: string } {
    if (error instanceof MkvError) {
      const status = STATUS_BY_CODE[error.code];
      if (status >= 500) this.logger.warn({ reqId: request.id, msg: `${request.method} ${request.url}: ${error.message}` });
      return { status, message: error.message };
    }
    if (error instanceof HttpException) {
      const response = error.getResponse();
      const detail = typeof response === 'string' ? response : (response as { message?: unknown }).message;
      const message = Array.isArray(detail) ? detail.join('; ') : String(detail ?? error.message);
      return { status: error.getStatus(), message };
    }
    this.logger.error({ reqId: request.id, msg: `${request.method} ${request.url}: ${(error as Error)?.stack ?? String(error)}` });
    return { status: HttpStatus.INTERNAL_SERVER_ERROR, message: 'internal error' };
  }
}
