export function TracesPage({ id }: { id?: string }) { return <h2>traces {id}</h2>; }
