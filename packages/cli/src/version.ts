/** docket's version, as `docket --version` prints it. */
export const VERSION = '0.1.0'
