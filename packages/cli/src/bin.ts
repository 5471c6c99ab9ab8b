#!/usr/bin/env node
import { main } from './main.js'

const code = await main(process.argv.slice(2))
// Exit once stdout has drained: a sync socket or a timer left behind must not keep a finished command alive.
process.stdout.write('', () => process.exit(code))
