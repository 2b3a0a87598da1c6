// Filled by a later issue; see README.md. Deliberately exports nothing yet.
export {};
