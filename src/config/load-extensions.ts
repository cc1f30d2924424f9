import 'reflect-metadata';
import type { DynamicModule } from '@nestjs/common';
import { GLOBAL_MODULE_METADATA, MODULE_METADATA } from '@nestjs/common/constants';
import { resolve } from 'node:path';
import type { MkvExtension } from '../mkv-options';
import { ConfigError } from './config-error';

const EXTENSION_KEYS = ['imports', 'index', 'volumeClient', 'placement'] as const;
/** What only one module may give: there is one index, one volume client, one placement. */
const REPLACED = ['index', 'volumeClient', 'placement'] as const;
const NEST_MODULE_KEYS = [...Object.values(MODULE_METADATA), GLOBAL_MODULE_METADATA];

/**
 * The files `--module` (or MKV_MODULES) names, each resolved from `cwd` and
 * required, merged into one MkvExtension: imports in the order given;
 * `index`, `volumeClient` and `placement` from at most one file each. Throws
 * ConfigError naming the file when one cannot be loaded or exports nothing
 * usable, or both files when two replace the same thing.
 */
export function loadExtensions(paths: string[], cwd = process.cwd()): MkvExtension {
  const merged: MkvExtension = {};
  const replacedBy = new Map<(typeof REPLACED)[number], string>();
  for (const path of paths) {
    const extension = loadExtension(path, cwd);
    if (extension.imports) merged.imports = [...(merged.imports ?? []), ...extension.imports];
    for (const key of REPLACED) {
      if (extension[key] === undefined) continue;
      const other = replacedBy.get(key);
      if (other !== undefined) throw new ConfigError(`invalid --module: ${other} and ${path} both replace the ${key}; only one module may`);
      replacedBy.set(key, path);
      (merged as Record<string, unknown>)[key] = extension[key];
    }
  }
  return merged;
}

function loadExtension(path: string, cwd: string): MkvExtension {
  let exported: unknown;
  try {
    exported = require(resolve(cwd, path));
  } catch (error) {
    // Node's "Cannot find module" goes on with the require stack: mkv's own files, of no use here.
    const reason = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    throw cannotLoad(path, reason);
  }
  try {
    return toExtension(chooseExport(exported));
  } catch (error) {
    if (error instanceof UnusableExport) throw cannotLoad(path, error.message);
    throw error;
  }
}

function cannotLoad(path: string, reason: string): ConfigError {
  return new ConfigError(`cannot load module ${path}: ${reason}`);
}

class UnusableExport extends Error {}

/** The default export, else `mkvExtension`, else the one Nest module class the file exports. */
function chooseExport(exported: unknown): unknown {
  if (isNestModuleClass(exported)) return exported; // module.exports = SomeModule
  if (typeof exported !== 'object' || exported === null) throw new UnusableExport('it exports neither a Nest module nor an MkvExtension');
  const named = exported as Record<string, unknown>;
  if (named.default !== undefined) return named.default;
  if (named.mkvExtension !== undefined) return named.mkvExtension;
  const modules = Object.entries(named).filter(([, value]) => isNestModuleClass(value));
  if (modules.length === 1) return modules[0][1];
  if (modules.length > 1) {
    throw new UnusableExport(`it exports several Nest modules (${modules.map(([name]) => name).join(', ')}): export the one to load as default or mkvExtension`);
  }
  throw new UnusableExport('it exports no default, no mkvExtension and no Nest module');
}

/** A Nest module class is imported as it is; an object is an MkvExtension (or a dynamic module, imported). */
function toExtension(value: unknown): MkvExtension {
  if (isNestModuleClass(value)) return { imports: [value] };
  if (typeof value === 'function') throw new UnusableExport(`${value.name || 'its export'} is not a Nest module (no @Module metadata)`);
  if (typeof value !== 'object' || value === null) throw new UnusableExport('its export is neither a Nest module nor an MkvExtension');
  if (typeof (value as { module?: unknown }).module === 'function') return { imports: [value as DynamicModule] };
  const unknown = Object.keys(value).find((key) => !(EXTENSION_KEYS as readonly string[]).includes(key));
  if (unknown !== undefined) throw new UnusableExport(`its MkvExtension has an unknown key '${unknown}' (it takes ${EXTENSION_KEYS.join(', ')})`);
  const extension = value as MkvExtension;
  if (extension.imports !== undefined && !Array.isArray(extension.imports)) throw new UnusableExport('its MkvExtension imports is not a list of modules');
  return extension;
}

function isNestModuleClass(value: unknown): value is new (...args: never[]) => unknown {
  return typeof value === 'function' && NEST_MODULE_KEYS.some((key) => Reflect.hasOwnMetadata(key, value));
}
