export function DashboardPage() { return <h2>dashboard</h2>; }
