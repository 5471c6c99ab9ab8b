/** Where a store lives unless told: `.docket` in the working directory. */
export const DEFAULT_DIR = '.docket'

export function defaultDir(): string {
  return process.env.DOCKET_DIR && process.env.DOCKET_DIR.length > 0 ? process.env.DOCKET_DIR : DEFAULT_DIR
}
