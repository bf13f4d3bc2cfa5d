// Module resolution as the bundlers @anycable/serverless-js is published for
// resolve it: its compiled ESM imports directories and extensionless files
// ('../rpc'), which Node's own ESM resolution refuses. Applied to that
// package only.
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context)
  } catch (error) {
    const inPackage = context.parentURL?.includes('/@anycable/serverless-js/')
    if (!inPackage || !specifier.startsWith('.')) throw error
    for (const candidate of [`${specifier}.js`, `${specifier}/index.js`]) {
      try {
        return await next(candidate, context)
      } catch {
        // the next candidate
      }
    }
    throw error
  }
}
