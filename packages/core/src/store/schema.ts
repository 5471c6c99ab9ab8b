/** The schema this docket writes (docs/FORMAT.md): `meta/schema` on disk, `meta.schema` in the document. */
export const SCHEMA_VERSION = 3
