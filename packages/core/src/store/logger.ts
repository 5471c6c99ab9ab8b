/** Where docket writes its log lines. `warn` is required: refused writes must be loud. */
export interface Logger {
  warn(message: string): void
  info?(message: string): void
  error?(message: string): void
}

/** WARN and ERROR lines on stderr; info is silent unless DOCKET_LOG=info. */
export const stderrLogger: Logger = {
  warn: (message) => process.stderr.write(`docket WARN ${message}\n`),
  error: (message) => process.stderr.write(`docket ERROR ${message}\n`),
  info: (message) => {
    if (process.env.DOCKET_LOG === 'info') process.stderr.write(`docket INFO ${message}\n`)
  },
}
