// Credentials never leave the process in text: config errors, start-up
// failures and log lines go through maskCredentials().

// scheme://user:password@ (user kept) and scheme://token@ (all of it): the userinfo runs to the last "@" before the host
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:"'<>]*)(:[^\s/?#"'<>]*)?@(?=[^\s@/?#"'<>]*(?:[\s/?#"'<>]|$))/gi
// password=..., token=... in a query string or a key=value list
const SECRET_PARAM = /([?&;\s]|^)((?:password|passwd|pass|pwd|secret|token|access_token|api_key|apikey)=)[^&;\s#"']*/gi

/** `text` with the passwords of URLs (`redis://:secret@h` → `redis://:***@h`) and `password=` values masked. */
export function maskCredentials(text: string): string {
  if (!text.includes('@') && !text.includes('=')) return text
  return text
    .replace(USERINFO, (_all, scheme: string, user: string, pass: string | undefined) => (pass === undefined ? `${scheme}***@` : `${scheme}${user}:***@`))
    .replace(SECRET_PARAM, '$1$2***')
}

/** Config keys whose values are secrets: shown as *** in config errors. */
export function isSecretKey(path: ReadonlyArray<PropertyKey>): boolean {
  return path.some((p) => typeof p === 'string' && /pass(word|wd)?$|secret|token|authorization|^headers$|credential|api_?key/i.test(p))
}
