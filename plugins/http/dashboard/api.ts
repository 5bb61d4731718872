// The admin API as the page calls it: the bearer token (kept in
// sessionStorage: gone when the tab closes), JSON in and out, and the live
// trace read as a fetch() stream (EventSource cannot send a header).

const TOKEN_KEY = 'hookmq.token'

export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
  }
}

/** What a 501 means on this page: the broker has no such feature (yet). */
export function unavailable(err: unknown): boolean {
  return err instanceof ApiError && err.status === 501
}

export class Api {
  /** called once per refusal (401): the page goes back to its token form */
  onUnauthorized: (message: string) => void = () => {}

  get token(): string | undefined {
    return sessionStorage.getItem(TOKEN_KEY) ?? undefined
  }

  set token(value: string | undefined) {
    if (value === undefined || value === '') sessionStorage.removeItem(TOKEN_KEY)
    else sessionStorage.setItem(TOKEN_KEY, value)
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>('GET', path, undefined, signal)
  }

  post<T>(path: string, body?: unknown): Promise<T> {
    return this.call<T>('POST', path, body ?? {})
  }

  del<T>(path: string): Promise<T> {
    return this.call<T>('DELETE', path)
  }

  private async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    const res = await this.fetch(method, path, body, signal)
    const text = await res.text()
    let parsed: unknown
    try {
      parsed = text === '' ? {} : JSON.parse(text)
    } catch {
      throw new ApiError(res.status, `${res.status} ${res.statusText}: not JSON`)
    }
    if (!res.ok) throw this.refusal(res.status, (parsed as { error?: string }).error ?? res.statusText)
    return parsed as T
  }

  private fetch(method: string, path: string, body: unknown, signal?: AbortSignal): Promise<Response> {
    const headers: Record<string, string> = { accept: 'application/json' }
    const token = this.token
    if (token !== undefined) headers.authorization = `Bearer ${token}`
    if (body !== undefined) headers['content-type'] = 'application/json'
    return fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), signal, cache: 'no-store' })
  }

  private refusal(status: number, message: string): ApiError {
    if (status === 401) this.onUnauthorized(message)
    return new ApiError(status, message)
  }

  /**
   * Reads Server-Sent Events from `path` until `signal` aborts or the server
   * ends the stream: `onEvent` gets each `data:` line parsed, `onComment` each
   * comment line (the server's first one says what is traced).
   */
  async stream(path: string, signal: AbortSignal, onEvent: (data: unknown) => void, onComment: (text: string) => void): Promise<void> {
    const res = await this.fetch('GET', path, undefined, signal)
    if (!res.ok || res.body === null) {
      const text = await res.text()
      let message = res.statusText
      try {
        message = (JSON.parse(text) as { error?: string }).error ?? message
      } catch {
        // keep the status text
      }
      throw this.refusal(res.status, message)
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader()
    let buffer = ''
    for (;;) {
      const { done, value } = await reader.read()
      if (done) return
      buffer += value
      for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
        const block = buffer.slice(0, end)
        buffer = buffer.slice(end + 2)
        for (const line of block.split('\n')) {
          if (line.startsWith('data:')) onEvent(JSON.parse(line.slice(5)))
          else if (line.startsWith(':')) onComment(line.slice(1).trim())
        }
      }
    }
  }
}
