import { CanActivate, ExecutionContext, Inject, Injectable, Module, UnauthorizedException } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { createHash, timingSafeEqual } from 'node:crypto';
import { ConfigError, type MkvExtension } from 'mkv';

/**
 * A guard on every route (an APP_GUARD): reads stay open, writes need
 * `Authorization: Bearer <token>`. A write is any method but GET and HEAD:
 * PUT, DELETE and UNLINK on keys (UNLINK reaches the routes as a DELETE),
 * POST and DELETE under /_admin, and the methods no route takes (so a
 * request without the token learns nothing, not even a 405).
 *
 * The refusal is Nest's UnauthorizedException, which mkv's exception filter
 * answers as `401` with its message in plain text, like every mkv error.
 */

const WRITE_TOKEN = Symbol('WRITE_TOKEN');
const TOKEN_VARIABLE = 'MKV_WRITE_TOKEN';
const READ_METHODS = new Set(['GET', 'HEAD']);

/** The token, read once when the server starts; it refuses to start without one. */
function writeTokenFromEnvironment(env: NodeJS.ProcessEnv): string {
  const token = env[TOKEN_VARIABLE]?.trim();
  if (!token) throw new ConfigError(`${TOKEN_VARIABLE} is not set: the write-token guard needs the token that writes must bring`);
  return token;
}

@Injectable()
export class WriteTokenGuard implements CanActivate {
  private readonly expectedDigest: Buffer;

  constructor(@Inject(WRITE_TOKEN) token: string) {
    this.expectedDigest = sha256(token);
  }

  canActivate(context: ExecutionContext): boolean {
    const http = context.switchToHttp();
    const request = http.getRequest<FastifyRequest>();
    if (READ_METHODS.has(request.method)) return true;
    const given = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? '')?.[1];
    // Digests of equal length, compared in constant time: the answer's timing tells nothing about the token.
    if (given !== undefined && timingSafeEqual(sha256(given), this.expectedDigest)) return true;
    http.getResponse<FastifyReply>().header('www-authenticate', given === undefined ? 'Bearer' : 'Bearer error="invalid_token"');
    throw new UnauthorizedException(given === undefined ? 'a write needs a token: send Authorization: Bearer <token>' : 'invalid write token');
  }
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}

@Module({
  providers: [
    { provide: WRITE_TOKEN, useFactory: () => writeTokenFromEnvironment(process.env) },
    { provide: APP_GUARD, useClass: WriteTokenGuard },
  ],
})
export class WriteTokenModule {}

/** What `mkv serve --module` loads, or what a team spreads into createServer/MkvModule.forRoot. */
export const mkvExtension: MkvExtension = { imports: [WriteTokenModule] };
