import fc from 'fast-check'
import { ITEM_TYPES, type ItemType } from '@docket/core'

/** Item names as users write them: words, unicode, punctuation; never empty, never multi-line. */
export const itemName: fc.Arbitrary<string> = fc
  .array(fc.oneof(fc.constantFrom('fix', 'login', 'API', 'überarbeiten', 'test', 'deploy', '#42', 'docs', '🚀', 'flaky'), fc.stringMatching(/^[A-Za-z0-9]{1,8}$/)), {
    minLength: 1,
    maxLength: 6,
  })
  .map((words) => words.join(' '))

export const itemType: fc.Arbitrary<ItemType> = fc.constantFrom(...ITEM_TYPES)

/** A markdown body with YAML front matter — sometimes malformed, as real pipelines have them. */
export const body: fc.Arbitrary<string> = fc.oneof(
  { weight: 4, arbitrary: fc.tuple(itemName, itemType, fc.lorem({ maxCount: 3 })).map(([name, type, text]) => `---\nname: ${JSON.stringify(name)}\ntype: ${type}\n---\n\n${text}\n`) },
  { weight: 1, arbitrary: fc.lorem({ maxCount: 2 }) },
  { weight: 1, arbitrary: fc.constantFrom('---\nname: [unclosed\n---\n', '---\nname: never closes\n', '') },
)

/** A content slot name other than body. */
export const slot: fc.Arbitrary<string> = fc.constantFrom('gate_output', 'notes', 'review')

/** An index into whatever is there at run time (items, events, messages): resolved modulo its length. */
export const pick: fc.Arbitrary<number> = fc.nat(1_000_000)
