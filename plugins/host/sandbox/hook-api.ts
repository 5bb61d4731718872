// What `import ... from 'hookmq'` gives a hook running in a worker: the values a
// hook uses at run time (its types all come from the package as usual). The
// broker itself is not loaded into a hook's thread.

export { defineHook } from '../define.js'
export { HookmqError, ReasonCode, ErrorCode } from '../../../core/errors.js'
export { checkTopicFilter, checkTopicName, matchesFilter, sharedKey, splitSharedKey } from '../../../core/topic.js'
export { newMessage } from '../../../core/types.js'
export { identityOf } from '../../../core/identity.js'
