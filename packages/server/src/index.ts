export { startServer, DEFAULT_PORT } from './server.js'
export type { RunningServer, ServeOptions, ServerLogger } from './server.js'
export { DocumentStore, PersistenceError, readStoredDocument } from './persistence.js'
