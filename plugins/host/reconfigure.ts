import { isDeepStrictEqual } from 'node:util'
import { HOOK_SETTINGS, HookmqError } from '../../core/index.js'
import type { HookHost, HookSettings } from './host.js'
import { configOf } from './lifecycle.js'

// A config reload's `hooks` and `hookTimeoutMs`, applied to a running host:
// each hook whose value changed (every hook when a host setting did) is loaded
// again as a change of its file would load it (config parsed, setup run,
// swapped in, the old version torn down once its calls have finished), now
// with its new value. All or nothing for the hooks that serve.

/**
 * Applies new hook settings and values. When a serving hook refuses its new
 * value (its config schema, its setup), the hooks already reloaded are loaded
 * again with their old values, the old settings stay, and it throws
 * CONFIG_INVALID naming the hook. A hook with no version serving (its loads
 * failed) is tried with its new value afterwards; failing again, it is only
 * reported as a failed load is. Answers the names of the hooks reloaded.
 */
export async function reconfigureHooks(host: HookHost, next: HookSettings, defaultTimeoutMs: number): Promise<string[]> {
  const prev = { hookConfig: host.options.hookConfig, defaultTimeoutMs: host.options.defaultTimeoutMs }
  const every = defaultTimeoutMs !== prev.defaultTimeoutMs || HOOK_SETTINGS.some((k) => !isDeepStrictEqual(prev.hookConfig[k], next[k]))
  const changed = host.hooks().filter((h) => every || !isDeepStrictEqual(configOf(prev.hookConfig, h.name), configOf(next, h.name)))
  host.options.hookConfig = next
  host.options.defaultTimeoutMs = defaultTimeoutMs
  const serving = changed.filter((h) => h.serving)
  const outcomes = await Promise.all(serving.map((h) => host.reloadKey(h.key)))
  const refused = serving.findIndex((_, i) => outcomes[i] !== undefined)
  if (refused >= 0) {
    host.options.hookConfig = prev.hookConfig
    host.options.defaultTimeoutMs = prev.defaultTimeoutMs
    await Promise.all(serving.map((h, i) => (outcomes[i] === undefined ? host.reloadKey(h.key) : undefined))) // back to the old values
    // its old version serves with its old value: no failed load stands (unless its file already failed before)
    for (const [i, h] of serving.entries()) if (outcomes[i] !== undefined && !h.failing) host.clearFailure(h.key)
    const { name } = serving[refused]!
    const why = outcomes[refused]!.message
    throw new HookmqError('CONFIG_INVALID', `config error: ${why.startsWith(`config hooks.${name}`) ? why.slice('config '.length) : `hooks.${name}: ${why}`}`)
  }
  const reloaded = serving.map((h) => h.name)
  for (const h of changed.filter((c) => !c.serving)) if ((await host.reloadKey(h.key)) === undefined) reloaded.push(h.name)
  return reloaded
}
