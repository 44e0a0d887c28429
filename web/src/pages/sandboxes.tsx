export function SandboxesPage({ id }: { id?: string }) { return <h2>sandboxes {id}</h2>; }
