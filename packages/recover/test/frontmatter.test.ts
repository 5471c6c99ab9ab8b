import { describe, expect, it } from 'vitest'
import { MAX_FRONT_MATTER_BYTES, parseFrontMatter } from '../src/index.js'

describe('parseFrontMatter', () => {
  it('reads name, type and depends_on', () => {
    const fm = parseFrontMatter('---\nname: Fix the login\ntype: bug\ndepends_on: [3, "7"]\nagent: a1\n---\n\nBody text\n')
    expect(fm).toMatchObject({ present: true, name: 'Fix the login', type: 'bug', dependsOn: ['3', '7'], warnings: [], content: '\nBody text\n' })
    expect(fm.data.agent).toBe('a1')
  })

  it('accepts a comma-separated depends_on and #-prefixed ids, and drops junk with a warning', () => {
    expect(parseFrontMatter('---\nname: x\ndepends_on: "1, #2, x, 0, 03"\n---\n')).toMatchObject({ dependsOn: ['1', '2'], warnings: [expect.stringContaining('"x"'), expect.stringContaining('"0"'), expect.stringContaining('"03"')] })
    expect(parseFrontMatter('---\nname: x\ndepends_on: 5\n---\n').dependsOn).toEqual(['5'])
    expect(parseFrontMatter('---\nname: x\ndepends_on: {a: 1}\n---\n').warnings).toEqual([expect.stringContaining('neither a list')])
  })

  const cases: Array<[string, string | Uint8Array, RegExp]> = [
    ['missing front matter', '# Just markdown\n', /no front matter/],
    ['an empty body', '', /empty body/],
    ['front matter that never closes', '---\nname: x\ntype: bug\n\nstill going', /never closes/],
    ['malformed YAML', '---\nname: [unclosed\n---\n', /not valid YAML/],
    ['non-YAML (a tab-indented mess)', '---\n\t- : : {\n---\n', /not valid YAML/],
    ['a scalar instead of a mapping', '---\njust a string\n---\n', /not a mapping/],
    ['a list instead of a mapping', '---\n- a\n- b\n---\n', /not a mapping/],
    ['binary (NUL bytes)', '---\nname: x\u0000\n---\n', /NUL bytes/],
    ['bytes that are not UTF-8', new Uint8Array([0x2d, 0x2d, 0x2d, 0x0a, 0xff, 0xfe, 0x0a]), /not UTF-8/],
    ['huge front matter', `---\nname: x\npad: "${'a'.repeat(MAX_FRONT_MATTER_BYTES)}"\n---\n`, /larger than/],
    ['an unknown type', '---\nname: x\ntype: chore\n---\n', /type "chore" is not one of/],
    ['no name', '---\ntype: bug\n---\n', /no name/],
    ['a name that is not text', '---\nname: {a: 1}\n---\n', /empty or not text/],
  ]
  for (const [what, body, warning] of cases) {
    it(`falls back to defaults with a warning on ${what}, never throwing`, () => {
      const fm = parseFrontMatter(body)
      expect(fm.warnings.some((w) => warning.test(w)), JSON.stringify(fm.warnings)).toBe(true)
      expect(fm.dependsOn).toEqual([])
      if (!/type|name/.test(what)) expect(fm.name).toBeUndefined()
    })
  }

  it('survives a billion-laughs alias bomb', () => {
    const bomb = ['---', 'a: &a ["x","x","x","x","x","x","x","x","x"]', 'b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]', 'c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]', 'd: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]', 'e: [*d,*d,*d,*d,*d,*d,*d,*d,*d]', 'name: x', '---', ''].join('\n')
    const fm = parseFrontMatter(bomb)
    expect(fm.warnings.length).toBeGreaterThan(0)
  })

  it('cleans control characters out of names and cuts very long ones', () => {
    expect(parseFrontMatter('---\nname: "a\\tb\\nc"\n---\n').name).toBe('a b c')
    const long = parseFrontMatter(`---\nname: ${'n'.repeat(500)}\n---\n`)
    expect(long.name).toHaveLength(300)
    expect(long.warnings).toEqual([expect.stringContaining('cut')])
  })
})
