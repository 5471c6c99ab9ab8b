import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { Output, table, type Io } from '../src/output.js'

function io(options: { tty: boolean; env?: NodeJS.ProcessEnv }): Io & { out: () => string; err: () => string } {
  const stdout = Object.assign(new PassThrough(), { isTTY: options.tty })
  const stderr = Object.assign(new PassThrough(), { isTTY: options.tty })
  let out = ''
  let err = ''
  stdout.on('data', (d: Buffer) => (out += d.toString()))
  stderr.on('data', (d: Buffer) => (err += d.toString()))
  return { stdout, stderr, stdin: new PassThrough(), env: options.env ?? {}, cwd: '/', out: () => out, err: () => err }
}

describe('Output', () => {
  it('draws a progress bar on stderr only when stderr is a terminal', async () => {
    const tty = io({ tty: true })
    const bar = new Output(tty, false).progress('scanning', 100)
    bar.update(50)
    bar.stop()
    expect(tty.err()).toContain('scanning [')
    expect(tty.out()).toBe('')
    const pipe = io({ tty: false })
    const none = new Output(pipe, false).progress('scanning', 100)
    none.update(50)
    none.stop()
    expect(pipe.err()).toBe('')
  })

  it('colours only terminals, and never with NO_COLOR or --json', () => {
    expect(new Output(io({ tty: true }), false).color.red('x')).not.toBe('x')
    expect(new Output(io({ tty: true, env: { NO_COLOR: '1' } }), false).color.red('x')).toBe('x')
    expect(new Output(io({ tty: false }), false).color.red('x')).toBe('x')
    expect(new Output(io({ tty: true }), true).color.red('x')).toBe('x')
  })

  it('prints one JSON document with --json, bytes as base64', () => {
    const target = io({ tty: false })
    new Output(target, true).result({ a: 1, b: new Uint8Array([1, 2]) }, () => 'human')
    expect(JSON.parse(target.out())).toEqual({ a: 1, b: { base64: 'AQI=' } })
  })

  it('pads table columns to their widest cell', () => {
    const plain = new Output(io({ tty: false }), false).color
    expect(table(plain, ['ID', 'NAME'], [['#1', 'a'], ['#100', 'b']])).toBe('ID    NAME\n#1    a\n#100  b')
  })
})
