import { unavailable } from './api.js'
import { toast } from './dom.js'

/** One tab of the page. */
export interface View {
  readonly title: string
  readonly el: HTMLElement
  /** reloads what the tab shows; called when the tab opens and every few seconds while it is open */
  refresh?(): Promise<void>
}

/** Runs an operator's action; its failure becomes a toast (a 501: the feature is missing on this broker) and a console line. */
export async function act(fn: () => Promise<void>): Promise<void> {
  try {
    await fn()
  } catch (err) {
    if (unavailable(err)) {
      console.warn(err)
      toast(`Not available on this broker: ${(err as Error).message}`, 'bad')
    } else {
      console.error(err)
      toast((err as Error).message, 'bad')
    }
  }
}
