// `openReader` alone: reads from the index rows load LevelDB but not Yjs (the document is
// loaded only if the reader has to fall back to it).
export { openReader } from './store/reader.js'
export type { StoreReader, OpenReaderOptions } from './store/reader.js'
