export { startServer } from './server.js'
export { DEFAULT_PORT } from './defaults.js'
export type { RunningServer, ServeOptions, ServerLogger } from './server.js'
export { DocumentStore, PersistenceError, readStoredDocument } from './persistence.js'
