export function InspectorPage({ pid }: { pid: string }) { return <h2>{pid}</h2>; }
