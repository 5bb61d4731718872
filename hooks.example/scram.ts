// scram.ts — SCRAM-SHA-256 (RFC 5802, RFC 7677) over MQTT 5 enhanced authentication.
//
// The password never crosses the network, and the broker keeps no password:
// only the SCRAM verifier of each user (RFC 5803's format, as PostgreSQL
// stores it), in this hook's config (`hooks.scram` in hookmq.config.json):
//
//   "hooks": { "scram": { "users": { "alice": "SCRAM-SHA-256$4096:<salt>$<StoredKey>:<ServerKey>" } } }
//
// Make a verifier with node (salt, StoredKey and ServerKey in base64):
//
//   node -e 'const c=require("crypto"),[p,i=4096]=process.argv.slice(1),s=c.randomBytes(16),k=c.pbkdf2Sync(p,s,+i,32,"sha256"),h=(k,m)=>c.createHmac("sha256",k).update(m).digest();console.log(`SCRAM-SHA-256$${i}:${s.toString("base64")}$${c.createHash("sha256").update(h(k,"Client Key")).digest("base64")}:${h(k,"Server Key").toString("base64")}`)' 'the password'
//
// The exchange, as an MQTT 5 client runs it (MQTT.js: `properties:
// { authenticationMethod: 'SCRAM-SHA-256', authenticationData }` on connect,
// and `client.handleAuth` for the AUTH packet):
//
//   CONNECT  Authentication Data = client-first-message   "n,,n=alice,r=<client nonce>"
//   AUTH 0x18 (from the broker)  = server-first-message   "r=<nonce>,s=<salt>,i=4096"     (this hook: `continue`)
//   AUTH 0x18 (from the client)  = client-final-message   "c=biws,r=<nonce>,p=<proof>"
//   CONNACK 0x00, Authentication Data = server-final      "v=<server signature>"          (this hook: allow)
//
// The client checks the server signature: the broker proves it knows the
// verifier too. A wrong password, an unknown user (who gets a made-up salt, so
// that user names cannot be probed) or a malformed message is refused with
// 0x87 Not authorized: MQTT 5's 0x86 is about the User Name and Password
// fields, which SCRAM does not use. Channel binding is not offered. A CONNECT
// with another method (or none) is not this hook's: it passes.
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto'
import { defineHook } from 'hookmq'
import { z } from 'zod'

const METHOD = 'SCRAM-SHA-256'
const b64 = '[A-Za-z0-9+/]+={0,2}'
const verifier = z
  .string()
  .regex(new RegExp(`^SCRAM-SHA-256\\$\\d+:${b64}\\$${b64}:${b64}$`), 'expected "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"')

/** what this hook keeps between the two steps (a plain value: it is copied) */
interface Exchange {
  user: string
  known: boolean
  gs2: string
  clientFirstBare: string
  serverFirst: string
  nonce: string
}

/** a secret of this run: the made-up salt of an unknown user is the same on every try, and means nothing */
const secret = randomBytes(32)

const hmac = (key: Buffer, text: string): Buffer => createHmac('sha256', key).update(text).digest()
const no = (why: string) => ({ deny: `SCRAM: ${why}`, reasonCode: 0x87 })

export default defineHook({
  name: 'scram',
  config: z.object({
    users: z.record(z.string(), verifier).default({}),
    /** the iteration count told for an unknown user (as a real one would have) */
    iterations: z.int().min(4096).default(4096),
  }),

  authenticate(input, { config }) {
    if (input.authenticationMethod !== METHOD) return undefined // not ours
    const data = input.authenticationData?.toString('utf8') ?? ''

    if (input.step === undefined) {
      // client-first-message: gs2 header, then n=<user>,r=<nonce>
      const m = /^([ny]),(?:a=[^,]*)?,(n=([^,]*),r=([\x21-\x2b\x2d-\x7e]+)(?:,.*)?)$/.exec(data)
      if (m === null) return no('malformed client-first-message (or channel binding asked: not offered)')
      const user = m[3]!.replace(/=2C/g, ',').replace(/=3D/g, '=')
      if (input.username !== undefined && input.username !== user) return no('the SCRAM user is not the CONNECT user name')
      // own keys only: a user named "constructor" or "__proto__" is nobody
      const stored = Object.hasOwn(config.users, user) ? config.users[user] : undefined
      const [iterations, salt] =
        stored === undefined
          ? [config.iterations, hmac(secret, user).subarray(0, 16).toString('base64')]
          : stored
              .slice(METHOD.length + 1)
              .split('$')[0]!
              .split(':')
      const nonce = m[4]! + randomBytes(18).toString('base64')
      const serverFirst = `r=${nonce},s=${salt},i=${iterations}`
      const state: Exchange = { user, known: stored !== undefined, gs2: data.slice(0, data.length - m[2]!.length), clientFirstBare: m[2]!, serverFirst, nonce }
      return { continue: serverFirst, state }
    }

    // client-final-message: c=<gs2 header>,r=<nonce>,p=<proof>
    const s = input.state as Exchange
    const at = data.lastIndexOf(',p=')
    const withoutProof = data.slice(0, at)
    const attrs = /^c=([^,]*),r=([^,]*)/.exec(withoutProof)
    if (input.step !== 1 || at < 0 || attrs === null) return no('malformed client-final-message')
    if (Buffer.from(attrs[1]!, 'base64').toString('utf8') !== s.gs2 || attrs[2] !== s.nonce) return no('channel binding or nonce mismatch')
    const stored = s.known && Object.hasOwn(config.users, s.user) ? config.users[s.user] : undefined
    if (stored === undefined) return no('authentication failed') // an unknown user: the same answer as a wrong password
    const [storedKey, serverKey] = stored
      .split('$')[2]!
      .split(':')
      .map((k) => Buffer.from(k, 'base64'))
    const authMessage = `${s.clientFirstBare},${s.serverFirst},${withoutProof}`
    // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); the proof holds when H(ClientKey) is StoredKey
    const proof = Buffer.from(data.slice(at + 3), 'base64')
    const signature = hmac(storedKey!, authMessage)
    if (proof.length !== signature.length) return no('authentication failed')
    for (let i = 0; i < proof.length; i++) proof[i]! ^= signature[i]!
    if (!timingSafeEqual(createHash('sha256').update(proof).digest(), storedKey!)) return no('authentication failed')
    return {
      allow: true,
      authenticationMethod: METHOD,
      authenticationData: `v=${hmac(serverKey!, authMessage).toString('base64')}`, // server-final-message
      user: { id: s.user, name: s.user }, // the identity (session owner) and the name acl.ts reads
    }
  },
})
