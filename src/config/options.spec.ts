import { getMetadataStorage } from 'class-validator';
import { Option } from 'commander';
import { ConfigError } from './config-error';
import { MkvConfig } from './mkv-config';
import { CLI_OPTIONS, CONFIG_OPTIONS, MKV_OPTIONS, resolveOption } from './options';

/** The one table of options (the CLI's --help and loadConfig both read it). */
describe('MKV_OPTIONS', () => {
  it('names each option as commander names its value, so a flag given reaches loadConfig under that name', () => {
    for (const [name, spec] of Object.entries(MKV_OPTIONS)) expect([name, new Option(spec.flags).attributeName()]).toEqual([name, name]);
  });

  it('has an option for every property MkvConfig validates, and none it does not', () => {
    const validated = new Set(getMetadataStorage().getTargetValidationMetadatas(MkvConfig, '', true, false).map((rule) => rule.propertyName));
    expect(Object.keys(CONFIG_OPTIONS).sort()).toEqual([...validated].sort());
  });

  it('gives each option with a variable its own MKV_ variable', () => {
    const variables = Object.values(MKV_OPTIONS).flatMap((spec) => (spec.env === undefined ? [] : [spec.env]));
    expect(new Set(variables).size).toBe(variables.length);
    for (const variable of variables) expect(variable).toMatch(/^MKV_[A-Z_]+$/);
  });

  describe(resolveOption.name, () => {
    const replicas = CONFIG_OPTIONS.replicas;

    it('takes the flag over the variable over the default, each parsed the same way', () => {
      expect(resolveOption(replicas, '2', { MKV_REPLICAS: '5' })).toBe(2);
      expect(resolveOption(replicas, undefined, { MKV_REPLICAS: '5' })).toBe(5);
      expect(resolveOption(replicas, undefined, {})).toBe(3);
    });

    it('names the flag when the variable is bad', () => {
      expect(() => resolveOption(replicas, undefined, { MKV_REPLICAS: 'x' })).toThrow(new ConfigError("invalid --replicas: 'x' is not a whole number"));
    });

    it('reads MKV_MODULES as a comma-separated list, and repeated --module flags as given', () => {
      expect(resolveOption(CLI_OPTIONS.module, undefined, { MKV_MODULES: ' a.js, ,b.js' })).toEqual(['a.js', 'b.js']);
      expect(resolveOption(CLI_OPTIONS.module, ['c.js', 'd.js'], { MKV_MODULES: 'a.js' })).toEqual(['c.js', 'd.js']);
      expect(resolveOption(CLI_OPTIONS.module, undefined, {})).toBeUndefined();
    });

    it('leaves --concurrency to its default (the rebalance default) and checks a given one', () => {
      expect(resolveOption(CLI_OPTIONS.concurrency, undefined, {})).toBe(8);
      expect(() => resolveOption(CLI_OPTIONS.concurrency, '65', {})).toThrow(new ConfigError("invalid --concurrency: '65' is not a whole number from 1 to 64"));
    });
  });
});
