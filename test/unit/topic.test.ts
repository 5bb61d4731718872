import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RetainedTree } from '../../core/retained.js'
import { checkTopicFilter, checkTopicName, matchesFilter, parseShared, TopicMemo } from '../../core/topic.js'
import { Matches, TopicTree } from '../../core/topic-tree.js'
import type { Message } from '../../core/types.js'

const limits = { maxTopicLength: 65535, maxTopicLevels: 128 }

const reused = new Matches<string>() // reused like the router's: what one match leaves must not leak into the next

function matches(tree: TopicTree<string>, topic: string): string[] {
  tree.match(topic, reused)
  const out = [...(reused.subs.slice(0, reused.subCount) as string[]), ...reused.groups.slice(0, reused.groupCount).map((g) => `share:${g!.group}`)].sort()
  reused.clear()
  return out
}

test('[MQTT-4.7.1-1] "#" must be last and alone in its level', () => {
  assert.equal(checkTopicFilter('a/#', limits), undefined)
  assert.equal(checkTopicFilter('#', limits), undefined)
  assert.ok(checkTopicFilter('a/#/b', limits))
  assert.ok(checkTopicFilter('a/b#', limits))
})

test('[MQTT-4.7.1-2] "+" must occupy a whole level', () => {
  assert.equal(checkTopicFilter('+/a/+', limits), undefined)
  assert.ok(checkTopicFilter('a/b+', limits))
  assert.ok(checkTopicFilter('a+/b', limits))
})

test('[MQTT-3.3.2-2] topic names carry no wildcards; [MQTT-4.7.3-1] and are not empty', () => {
  assert.ok(checkTopicName('a/+', limits))
  assert.ok(checkTopicName('a/#', limits))
  assert.ok(checkTopicName('', limits))
  assert.ok(checkTopicName('a\u0000b', limits))
  assert.equal(checkTopicName('a/b c/ü', limits), undefined)
  assert.ok(checkTopicName('a'.repeat(20), { maxTopicLength: 10, maxTopicLevels: 5 }))
  assert.ok(checkTopicName('a/b/c', { maxTopicLength: 100, maxTopicLevels: 2 }))
})

test('[MQTT-4.8.2-1] shared subscription filters are split into group and filter', () => {
  assert.deepEqual(parseShared('$share/g1/a/+'), { group: 'g1', filter: 'a/+' })
  assert.equal(parseShared('a/b'), null)
  assert.equal(typeof parseShared('$share/g1'), 'string')
  assert.equal(typeof parseShared('$share//a'), 'string')
  assert.equal(typeof parseShared('$share/g+/a'), 'string')
})

test('topic tree matches exact, + and # filters', () => {
  const tree = new TopicTree<string>()
  tree.add('a/b/c', 'c1', 'exact')
  tree.add('a/+/c', 'c1', 'plus')
  tree.add('a/#', 'c1', 'hash')
  tree.add('#', 'c1', 'all')
  tree.add('a/b', 'c1', 'ab')
  tree.add('x/+', 'c2', 'x')
  assert.deepEqual(matches(tree, 'a/b/c'), ['all', 'exact', 'hash', 'plus'])
  assert.deepEqual(matches(tree, 'a'), ['all', 'hash']) // "a/#" matches the parent level
  assert.deepEqual(matches(tree, 'a/b'), ['ab', 'all', 'hash'])
  assert.deepEqual(matches(tree, 'x/y'), ['all', 'x'])
  assert.deepEqual(matches(tree, 'x/y/z'), ['all'])
  assert.equal(tree.size, 6)
})

test('[MQTT-4.7.2-1] topics starting with $ are not matched by leading wildcards', () => {
  const tree = new TopicTree<string>()
  tree.add('#', 'c', 'all')
  tree.add('+/broker/uptime', 'c', 'plus')
  tree.add('$SYS/#', 'c', 'sys')
  assert.deepEqual(matches(tree, '$SYS/broker/uptime'), ['sys'])
  assert.equal(matchesFilter('#', '$SYS/x'), false)
  assert.equal(matchesFilter('$SYS/#', '$SYS/x'), true)
  assert.equal(matchesFilter('a/+/c', 'a/b/c'), true)
  assert.equal(matchesFilter('a/+', 'a/b/c'), false)
})

test('topic tree remove prunes empty branches and shared groups', () => {
  const tree = new TopicTree<string>()
  tree.add('a/b', 'c1', 'v1')
  tree.add('a/b', 'c2', 'v2', 'g')
  tree.add('a/b', 'c3', 'v3', 'g')
  assert.deepEqual(matches(tree, 'a/b'), ['share:g', 'v1'])
  assert.equal(tree.remove('a/b', 'c1'), true)
  assert.equal(tree.remove('a/b', 'c1'), false)
  assert.equal(tree.remove('a/b', 'c2', 'g'), true)
  assert.deepEqual(matches(tree, 'a/b'), ['share:g'])
  assert.equal(tree.remove('a/b', 'c3', 'g'), true)
  assert.deepEqual(matches(tree, 'a/b'), [])
  assert.equal(tree.size, 0)
  assert.equal((tree as unknown as { root: { children: Map<string, unknown> } }).root.children.size, 0)
})

test('retained tree matches filters and skips $ topics for leading wildcards', () => {
  const tree = new RetainedTree()
  const msg = (topic: string): Message => ({ topic, payload: Buffer.from(topic), qos: 0, retain: true })
  for (const t of ['a', 'a/b', 'a/b/c', 'a/x/c', '$SYS/up', 'b']) tree.set(t, msg(t))
  const topics = (f: string): string[] =>
    tree
      .match(f)
      .map((m) => m.topic)
      .sort()
  assert.deepEqual(topics('a/#'), ['a', 'a/b', 'a/b/c', 'a/x/c'])
  assert.deepEqual(topics('a/+/c'), ['a/b/c', 'a/x/c'])
  assert.deepEqual(topics('#'), ['a', 'a/b', 'a/b/c', 'a/x/c', 'b'])
  assert.deepEqual(topics('+'), ['a', 'b'])
  assert.deepEqual(topics('$SYS/#'), ['$SYS/up'])
  tree.delete('a/b')
  assert.deepEqual(topics('a/#'), ['a', 'a/b/c', 'a/x/c'])
  assert.equal(tree.size, 5)
  tree.set('e', { ...msg('e'), expiresAt: Date.now() - 1 })
  assert.deepEqual(topics('e'), [])
})

test('topic tree keeps one subscriber inline and moves to a map for more, both ways', () => {
  const tree = new TopicTree<string>()
  assert.equal(tree.add('x/y', 'c1', 'v1'), true)
  assert.equal(tree.add('x/y', 'c1', 'v1b'), false) // replaced
  assert.deepEqual(matches(tree, 'x/y'), ['v1b'])
  assert.equal(tree.add('x/y', 'c2', 'v2'), true)
  assert.equal(tree.add('x/y', 'c3', 'v3'), true)
  assert.deepEqual(matches(tree, 'x/y'), ['v1b', 'v2', 'v3'])
  assert.equal(tree.remove('x/y', 'c1'), true)
  assert.equal(tree.remove('x/y', 'c2'), true)
  assert.deepEqual(matches(tree, 'x/y'), ['v3'])
  assert.equal(tree.remove('x/y', 'c3'), true)
  assert.equal(tree.size, 0)
  assert.deepEqual(matches(tree, 'x/y'), [])
})

test('TopicMemo computes once per topic and forgets everything when full, never holding more than its limit', () => {
  let calls = 0
  const memo = new TopicMemo((topic: string) => {
    calls++
    return topic.length
  })
  assert.equal(memo.get('a/b'), 3)
  assert.equal(memo.get('a/b'), 3)
  assert.equal(calls, 1)
  const small = new TopicMemo((topic: string) => {
    calls++
    return topic
  }, 2)
  calls = 0
  small.get('x')
  small.get('y')
  small.get('x')
  assert.equal(calls, 2) // both remembered
  small.get('z') // full: forgets x and y
  small.get('x')
  assert.equal(calls, 4)
  memo.clear()
  memo.get('a/b')
  assert.equal(calls, 5)
})

test('checkTopicName counts UTF-8 bytes (not UTF-16 units) against maxTopicLength, and levels against maxTopicLevels', () => {
  const small = { maxTopicLength: 10, maxTopicLevels: 3 }
  assert.equal(checkTopicName('abcdefghij', small), undefined) // 10 bytes
  assert.equal(checkTopicName('abcdefghijk', small), 'topic too long')
  assert.equal(checkTopicName('ééééé', small), undefined) // 5 units, 10 bytes
  assert.equal(checkTopicName('éééééé', small), 'topic too long') // 6 units, 12 bytes
  assert.equal(checkTopicName('a/b/c', small), undefined)
  assert.equal(checkTopicName('a/b/c/', small), 'too many topic levels')
  assert.equal(checkTopicName('a/+', small), 'wildcard in topic name')
  assert.equal(checkTopicName('a\u0000', small), 'null character in topic')
})
