export async function main(argv: string[]): Promise<number> {
  console.log('hydra-ops', argv.join(' '));
  return 0;
}
