export function ProcessesPage() { return <h2>processes</h2>; }
