import type { ClassProvider, DynamicModule, ExistingProvider, FactoryProvider, ForwardReference, InjectionToken, Provider, Type, ValueProvider } from '@nestjs/common';

/**
 * What a team gives in place of a stock provider: a class, or a provider
 * without its `provide` (useClass, useFactory with inject, useValue,
 * useExisting). It is provided in mkv's own module for that token, which is
 * global: it can inject the stock implementation to wrap it, MkvConfig, and
 * whatever a global module exports.
 */
export type Replacement<T> =
  | Type<T>
  | Omit<ClassProvider<T>, 'provide'>
  | Omit<FactoryProvider<T>, 'provide'>
  | Omit<ValueProvider<T>, 'provide'>
  | Omit<ExistingProvider<T>, 'provide'>;

/** The provider of `token`: the replacement when there is one, else the stock class. */
export function provideAs<T>(token: InjectionToken, replacement: Replacement<T> | undefined, stock: Type<T>): Provider {
  if (replacement === undefined) return { provide: token, useExisting: stock };
  if (typeof replacement === 'function') return { provide: token, useClass: replacement };
  return { ...replacement, provide: token } as Provider;
}

/** A Nest module, as `imports` takes it (not a promise of one). */
export type ModuleImport = Type<unknown> | DynamicModule | ForwardReference;
