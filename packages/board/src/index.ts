export { startBoard } from './server.js'
export type { BoardOptions, RunningBoard } from './server.js'
