/** The port `docket serve` listens on unless told otherwise (its own module, so that help texts need not load the server). */
export const DEFAULT_PORT = 1234
